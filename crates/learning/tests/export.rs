//! Export round trip: someone with only the `.safetensors` file and the JSON card (here:
//! the `safetensors` crate, serde_json and plain loops, as numpy would do it) rebuilds
//! the model, preprocesses raw inputs and gets the same logits.

use learning::{
    evaluate, model_from_safetensors, model_hash_hex, train, write_export, Budget, Dataset,
    DatasetSource, Model, ModelCard, ModelSpec, Normalisation, SplitFractions, TrainConfig,
};
use safetensors::{Dtype, SafeTensors};

fn f32s(view: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    assert_eq!(view.dtype(), Dtype::F32);
    view.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn json_f32s(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn exported_mlp_is_rebuilt_from_file_and_card_with_the_same_predictions() {
    let digits = Dataset::digits().unwrap();
    let raw = digits.split(SplitFractions::default(), 1).unwrap();
    let norm = Normalisation::fit(&raw.train).unwrap();
    let (mut train_set, mut test_set) = (raw.train.clone(), raw.test.clone());
    norm.apply(&mut train_set).unwrap();
    norm.apply(&mut test_set).unwrap();
    let spec = ModelSpec::Mlp {
        input: 64,
        hidden: vec![32, 16],
        classes: 10,
    };
    let initial = Model::new(spec.clone(), 4).unwrap();
    let mut model = initial.clone();
    let config = TrainConfig {
        lr: 0.05,
        momentum: 0.9,
        batch: 32,
        budget: Budget::Steps(200),
        seed: 1,
        threads: 1,
    };
    train(
        &mut model,
        &["layer0", "layer1", "layer2"],
        &train_set,
        &config,
    )
    .unwrap();
    let accuracy = evaluate(&model, &test_set).unwrap().accuracy;
    let lineage = vec![model_hash_hex(&initial)];
    let card = ModelCard::new(
        &model,
        &DatasetSource::Digits,
        &norm,
        accuracy,
        lineage.clone(),
    );

    let dir = tempfile::tempdir().unwrap();
    let paths = write_export(dir.path(), "global", &model, &card).unwrap();

    // The card, read as plain JSON.
    let card_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&paths.card).unwrap()).unwrap();
    assert_eq!(card_json["spec"]["kind"], "mlp");
    assert_eq!(card_json["dataset"], "digits");
    assert_eq!(
        card_json["param_count"],
        64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    );
    assert_eq!(card_json["model_hash"], model_hash_hex(&model));
    assert_eq!(card_json["lineage"][0], lineage[0]);
    assert!((card_json["test_accuracy"].as_f64().unwrap() as f32 - accuracy).abs() < 1e-6);
    let mean = json_f32s(&card_json["preprocessing"]["normalisation"]["mean"]);
    let std = json_f32s(&card_json["preprocessing"]["normalisation"]["std"]);
    let hidden: Vec<usize> = card_json["spec"]["hidden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap() as usize)
        .collect();

    // The weights, read with the safetensors crate.
    let bytes = std::fs::read(&paths.weights).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let layers = hidden.len() + 1;

    // Preprocess raw test rows from the card and run the forward pass by hand.
    for i in 0..raw.test.len() {
        let mut x: Vec<f32> = raw
            .test
            .row(i)
            .iter()
            .zip(&mean)
            .zip(&std)
            .map(|((v, m), s)| (v - m) / s)
            .collect();
        for layer in 0..layers {
            let w_view = file.tensor(&format!("layer{layer}.weight")).unwrap();
            let (out, inp) = (w_view.shape()[0], w_view.shape()[1]);
            let w = f32s(&w_view);
            let b = f32s(&file.tensor(&format!("layer{layer}.bias")).unwrap());
            x = (0..out)
                .map(|j| {
                    let z = (0..inp).map(|k| x[k] * w[j * inp + k]).sum::<f32>() + b[j];
                    if layer + 1 < layers {
                        z.max(0.0)
                    } else {
                        z
                    }
                })
                .collect();
        }
        let expected = model.logits_of(test_set.row(i)).unwrap();
        for (a, b) in x.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-4, "sample {i}: {a} vs {b}");
        }
    }

    // And this crate reads its own export back to the identical model.
    let back = model_from_safetensors(spec, &bytes).unwrap();
    assert_eq!(model_hash_hex(&back), model_hash_hex(&model));
    let card_back: ModelCard = serde_json::from_value(card_json).unwrap();
    assert_eq!(card_back, card);
}

#[test]
fn exported_cnn_reads_back_bit_identical() {
    let spec = ModelSpec::Cnn {
        height: 8,
        width: 8,
        channels: [2, 4],
        kernel: 3,
        classes: 10,
    };
    let model = Model::new(spec.clone(), 8).unwrap();
    let bytes = learning::model_to_safetensors(&model).unwrap();
    let back = model_from_safetensors(spec, &bytes).unwrap();
    assert_eq!(back, model);
    let inputs = vec![0.3f32; 64 * 2];
    assert_eq!(
        back.logits_of(&inputs).unwrap(),
        model.logits_of(&inputs).unwrap()
    );
    // A file for another architecture is refused, not misread.
    let other = ModelSpec::Cnn {
        height: 8,
        width: 8,
        channels: [4, 4],
        kernel: 3,
        classes: 10,
    };
    assert!(model_from_safetensors(other, &bytes).is_err());
}
