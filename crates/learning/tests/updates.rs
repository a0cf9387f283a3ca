//! The update decoder: every way an upload can be wrong gets its own error.

use std::collections::HashMap;

use learning::{
    decode_update, encode_update, ExpectedSegment, Model, ModelSpec, SegmentUpdate, UpdateError,
    UPDATE_HEADER_BYTES_MAX,
};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn model() -> Model {
    Model::new(
        ModelSpec::Mlp {
            input: 6,
            hidden: vec![4],
            classes: 3,
        },
        1,
    )
    .unwrap()
}

fn expected() -> ExpectedSegment {
    ExpectedSegment::of(&model(), "layer0").unwrap()
}

/// Serialises `(name, dtype, shape, bytes)` tensors as safetensors.
fn encode(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                *name,
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None::<HashMap<String, String>>).unwrap()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn good_weight() -> (&'static str, Dtype, Vec<usize>, Vec<u8>) {
    (
        "layer0.weight",
        Dtype::F32,
        vec![4, 6],
        f32_bytes(&[0.5; 24]),
    )
}

fn good_bias() -> (&'static str, Dtype, Vec<usize>, Vec<u8>) {
    ("layer0.bias", Dtype::F32, vec![4], f32_bytes(&[0.25; 4]))
}

#[test]
fn a_trained_segment_round_trips() {
    let model = model();
    let bytes = encode_update(&model, "layer0").unwrap();
    let update = decode_update(&bytes, &expected()).unwrap();
    assert_eq!(update, SegmentUpdate::from_model(&model, "layer0").unwrap());
    let handmade = decode_update(&encode(&[good_weight(), good_bias()]), &expected()).unwrap();
    assert_eq!(handmade.tensors[1].values, vec![0.25; 4]);
}

#[test]
fn unknown_tensor_is_refused() {
    let extra = ("layer1.bias", Dtype::F32, vec![3], f32_bytes(&[0.0; 3]));
    assert_eq!(
        decode_update(&encode(&[good_weight(), good_bias(), extra]), &expected()),
        Err(UpdateError::UnknownTensor("layer1.bias".into()))
    );
}

#[test]
fn missing_tensor_is_refused() {
    assert_eq!(
        decode_update(&encode(&[good_weight()]), &expected()),
        Err(UpdateError::MissingTensor("layer0.bias".into()))
    );
}

#[test]
fn wrong_shape_is_refused() {
    let transposed = (
        "layer0.weight",
        Dtype::F32,
        vec![6, 4],
        f32_bytes(&[0.5; 24]),
    );
    assert_eq!(
        decode_update(&encode(&[transposed, good_bias()]), &expected()),
        Err(UpdateError::WrongShape {
            name: "layer0.weight".into(),
            expected: vec![4, 6],
            found: vec![6, 4],
        })
    );
}

#[test]
fn wrong_dtype_is_refused() {
    let doubles = ("layer0.bias", Dtype::F64, vec![4], vec![0u8; 32]);
    assert!(matches!(
        decode_update(&encode(&[good_weight(), doubles]), &expected()),
        Err(UpdateError::WrongDtype { name, .. }) if name == "layer0.bias"
    ));
}

#[test]
fn non_finite_values_are_refused() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut values = [0.25f32; 4];
        values[2] = bad;
        let bias = ("layer0.bias", Dtype::F32, vec![4], f32_bytes(&values));
        assert_eq!(
            decode_update(&encode(&[good_weight(), bias]), &expected()),
            Err(UpdateError::NonFinite {
                name: "layer0.bias".into(),
                index: 2
            })
        );
    }
}

#[test]
fn oversize_upload_is_refused_before_parsing() {
    let limit_bytes = (24 + 4) * 4 + UPDATE_HEADER_BYTES_MAX;
    assert_eq!(expected().limit_bytes(), limit_bytes);
    let mut padded = encode(&[good_weight(), good_bias()]);
    padded.resize(limit_bytes + 1, b' ');
    assert_eq!(
        decode_update(&padded, &expected()),
        Err(UpdateError::Oversize {
            bytes: limit_bytes + 1,
            limit_bytes
        })
    );
}

#[test]
fn malformed_bytes_are_refused() {
    let bytes = encode(&[good_weight(), good_bias()]);
    for garbage in [&[][..], &[1, 2, 3], &bytes[..bytes.len() - 1], &[0xff; 64]] {
        assert!(matches!(
            decode_update(garbage, &expected()),
            Err(UpdateError::Malformed(_))
        ));
    }
}
