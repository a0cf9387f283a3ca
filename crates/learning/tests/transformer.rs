//! The byte-level transformer language model: bitwise reproducible training and
//! evaluation at every SIMD level and thread count (resumable from a checkpoint), training on
//! the shipped WordNet corpus, bad specs refused, text shards on the wire, the exported model
//! card, and the sampler.

use learning::{
    evaluate, evaluate_with_kernel, model_from_safetensors, model_hash_hex, model_to_safetensors,
    sample_text, text_windows, train, train_with_kernel, Budget, Dataset, DatasetSource, Kernel,
    LearningError, Model, ModelCard, ModelChoice, ModelSpec, Normalisation, Samples, Simd,
    SplitFractions, TrainConfig, Trainer, LM_DEFAULT, TEXT_CONTEXT,
};

const GLOSSES: &[u8] = include_bytes!("../data/wordnet-glosses.txt");

fn tiny(context: usize) -> ModelSpec {
    ModelSpec::Transformer {
        context,
        vocab: 256,
        dim: 32,
        heads: 4,
        layers: 2,
    }
}

#[test]
fn training_and_evaluation_have_the_same_bits_at_every_level_and_thread_count() {
    let shard = text_windows(&GLOSSES[..16 * 200], 16, "glosses").unwrap();
    let held_out = text_windows(&GLOSSES[100_000..100_000 + 16 * 40], 16, "glosses").unwrap();
    let initial = Model::new(tiny(16), 3).unwrap();
    let all: Vec<String> = initial.segments().into_iter().map(|s| s.name).collect();
    assert_eq!(all, ["embed", "block0", "block1", "head"]);
    for segments in [all.clone(), vec!["block0".to_owned()]] {
        for momentum in [0.9, 0.0] {
            let config = TrainConfig {
                lr: 0.1,
                momentum,
                batch: 8,
                budget: Budget::Steps(6),
                seed: 11,
                threads: 1,
            };
            let mut first: Option<(String, [u8; 32], u32)> = None;
            let mut moved = false;
            for simd in Simd::available() {
                for threads in [1, 2] {
                    let config = TrainConfig {
                        threads,
                        ..config.clone()
                    };
                    let kernel = Kernel::Reproducible(simd);
                    let mut model = initial.clone();
                    train_with_kernel(&mut model, &segments, &shard, &config, kernel).unwrap();
                    // Three steps, a checkpoint, and three more from it: the same run.
                    let mut trainer =
                        Trainer::start_with_kernel(&initial, &segments, &shard, &config, kernel)
                            .unwrap();
                    trainer.run(3).unwrap();
                    let state =
                        learning::TrainState::decode(&trainer.state().unwrap().encode()).unwrap();
                    let mut resumed =
                        Trainer::resume(&initial, &segments, &shard, &config, &state).unwrap();
                    resumed.run(3).unwrap();
                    let mut from_checkpoint = initial.clone();
                    resumed.finish(&mut from_checkpoint).unwrap();
                    let at = format!(
                        "{segments:?} momentum {momentum} {:?} at {threads} threads",
                        simd.level()
                    );
                    assert_eq!(
                        model_hash_hex(&from_checkpoint),
                        model_hash_hex(&model),
                        "resumed run differs {at}"
                    );
                    let mut trainer =
                        Trainer::start_with_kernel(&initial, &segments, &shard, &config, kernel)
                            .unwrap();
                    trainer.run(6).unwrap();
                    let state = trainer.state().unwrap();
                    moved = state.velocity.iter().flatten().any(|&v| v != 0.0);
                    let loss = evaluate_with_kernel(&model, &held_out, kernel)
                        .unwrap()
                        .loss;
                    // The state hash covers the weights and the momentum velocity.
                    let here = (model_hash_hex(&model), state.hash(), loss.to_bits());
                    match &first {
                        None => first = Some(here),
                        Some(reference) => assert_eq!(&here, reference, "{at}"),
                    }
                }
            }
            let (hash, _, _) = first.unwrap();
            assert_ne!(hash, model_hash_hex(&initial), "training changed nothing");
            assert_eq!(moved, momentum > 0.0);
        }
    }
}

/// Bits per byte of a mean loss in nats.
fn bits_per_byte(loss: f32) -> f32 {
    loss / std::f32::consts::LN_2
}

#[test]
fn training_on_the_shipped_corpus_lowers_the_held_out_loss() {
    let data = Dataset::load(&DatasetSource::Wordnet).unwrap();
    let mut split = data.split(SplitFractions::default(), 5).unwrap();
    let norm = Normalisation::for_dataset(&data, &split.train).unwrap();
    for set in [&mut split.train, &mut split.held_out, &mut split.test] {
        norm.apply(set).unwrap();
    }
    let held_out = split.held_out.select(&(0..128).collect::<Vec<_>>());
    let choice: ModelChoice = "lm:32,1,2".parse().unwrap();
    let spec = choice
        .spec(split.train.feature_count(), data.class_count)
        .unwrap();
    let mut model = Model::new(spec, 1).unwrap();
    let before = evaluate(&model, &held_out).unwrap();
    // A uniform guess over 256 bytes is 8 bits per byte.
    assert!((bits_per_byte(before.loss) - 8.0).abs() < 0.1, "{before:?}");
    let segments: Vec<String> = model.segments().into_iter().map(|s| s.name).collect();
    let config = TrainConfig {
        lr: 0.5,
        momentum: 0.9,
        batch: 16,
        budget: Budget::Steps(300),
        seed: 2,
        threads: 2,
    };
    let prompt = b"a small ";
    let text_before = sample_text(&model, prompt, 60, 1).unwrap();
    let report = train(&mut model, &segments, &split.train, &config).unwrap();
    let text_after = sample_text(&model, prompt, 60, 1).unwrap();
    eprintln!(
        "before: {:?}\nafter:  {:?}",
        String::from_utf8_lossy(&text_before),
        String::from_utf8_lossy(&text_after)
    );
    let after = evaluate(&model, &held_out).unwrap();
    eprintln!(
        "held-out {:.3} -> {:.3} bits per byte, next-byte accuracy {:.3} -> {:.3}, {} steps in {:.2}s",
        bits_per_byte(before.loss),
        bits_per_byte(after.loss),
        before.accuracy,
        after.accuracy,
        report.steps,
        report.train_secs
    );
    // Below the byte-frequency entropy of English text (about 4.1 bits).
    assert!(bits_per_byte(after.loss) < 3.9, "{after:?}");
    assert!(after.accuracy > 0.2, "{after:?}");
}

#[test]
fn bad_specs_are_refused_with_the_reason() {
    let spec = |context, vocab, dim, heads, layers| ModelSpec::Transformer {
        context,
        vocab,
        dim,
        heads,
        layers,
    };
    for (bad, why) in [
        (spec(16, 256, 30, 4, 2), "not divisible by its 4 heads"),
        (spec(0, 256, 32, 4, 2), "must all be non-zero"),
        (spec(16, 0, 32, 4, 2), "must all be non-zero"),
        (spec(16, 256, 32, 0, 2), "must all be non-zero"),
        (spec(16, 256, 32, 4, 0), "must all be non-zero"),
        (spec(4096, 256, 32, 4, 2), "TRANSFORMER_CONTEXT_MAX"),
        (spec(16, 256, 4096, 4, 2), "PARAMS_MAX"),
        (spec(16, 256, 32, 4, usize::MAX), "PARAMS_MAX"),
        (spec(16, 1 << 30, 32, 4, 1), "PARAMS_MAX"),
    ] {
        match Model::new(bad.clone(), 0) {
            Err(LearningError::InvalidSpec(message)) => {
                assert!(message.contains(why), "{bad:?}: {message}")
            }
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    let err = "lm:30,2,4".parse::<ModelChoice>().unwrap_err();
    assert!(err.contains("not divisible"), "{err}");
    // Samples that are not token ids of the model never reach its embedding.
    let model = Model::new(tiny(4), 0).unwrap();
    for bad in [256.0, -1.0, 0.5, f32::NAN] {
        let shard = Samples::new(vec![1.0, 2.0, bad, 3.0, 4.0], vec![4], 5).unwrap();
        let config = TrainConfig {
            lr: 0.1,
            momentum: 0.0,
            batch: 1,
            budget: Budget::Steps(1),
            seed: 0,
            threads: 1,
        };
        let mut m = model.clone();
        assert!(matches!(
            train(&mut m, &["head"], &shard, &config),
            Err(LearningError::SamplesDoNotFitModel(_))
        ));
        assert!(evaluate(&model, &shard).is_err());
    }
}

#[test]
fn text_shards_and_models_round_trip_and_the_card_describes_the_model() {
    let data = Dataset::load(&DatasetSource::Wordnet).unwrap();
    let shard = data.samples.select(&[0, 7, 300]);
    let bytes = shard.to_safetensors().unwrap();
    let back = Samples::from_safetensors(&bytes, TEXT_CONTEXT + 1, 256).unwrap();
    assert_eq!(back, shard);
    let spec = LM_DEFAULT.spec(TEXT_CONTEXT + 1, 256).unwrap();
    let model = Model::new(spec.clone(), 4).unwrap();
    let again = model_from_safetensors(spec, &model_to_safetensors(&model).unwrap()).unwrap();
    assert_eq!(model_hash_hex(&again), model_hash_hex(&model));
    let norm = Normalisation::for_dataset(&data, &data.samples).unwrap();
    let card = ModelCard::new(&model, &DatasetSource::Wordnet, &norm, 0.0, Vec::new());
    assert_eq!(card.dataset, "wordnet");
    assert!(card.forward.contains("causal"), "{}", card.forward);
    assert!(card.preprocessing.formula.starts_with("none"));
    let json = serde_json::to_string(&card).unwrap();
    assert!(
        json.contains(
            r#""kind":"transformer","context":64,"vocab":256,"dim":64,"heads":4,"layers":2"#
        ),
        "{json}"
    );
}

#[test]
fn sampled_text_is_deterministic_for_a_seed() {
    let model = Model::new(tiny(16), 2).unwrap();
    let a = sample_text(&model, b"a word", 40, 7).unwrap();
    assert_eq!(a.len(), 40);
    assert_eq!(a, sample_text(&model, b"a word", 40, 7).unwrap());
    assert_ne!(a, sample_text(&model, b"a word", 40, 8).unwrap());
    // Longer than the context, and from nothing.
    assert_eq!(sample_text(&model, &[], 20, 1).unwrap().len(), 20);
    assert!(sample_text(&model, b"x", 0, 1).unwrap().is_empty());
    let mlp = Model::new(
        ModelSpec::Mlp {
            input: 4,
            hidden: vec![2],
            classes: 2,
        },
        0,
    )
    .unwrap();
    assert!(sample_text(&mlp, b"x", 3, 1).is_err());
}

/// The coordinator's path for one miner's block: train it alone, encode, decode against the
/// expected segment, score with the held-out loss of the substituted model.
#[test]
fn a_trained_block_travels_as_an_update_and_is_scored() {
    let shard = text_windows(&GLOSSES[..16 * 300], 16, "glosses").unwrap();
    let held_out = text_windows(&GLOSSES[200_000..200_000 + 16 * 50], 16, "glosses").unwrap();
    let global = Model::new(tiny(16), 6).unwrap();
    let mut trained = global.clone();
    let config = TrainConfig {
        lr: 0.3,
        momentum: 0.9,
        batch: 16,
        budget: Budget::Steps(40),
        seed: 4,
        threads: 2,
    };
    train(&mut trained, &["block1"], &shard, &config).unwrap();
    let bytes = learning::encode_update(&trained, "block1").unwrap();
    let expected = learning::ExpectedSegment::of(&global, "block1").unwrap();
    let update = learning::decode_update(&bytes, &expected).unwrap();
    assert_eq!(update.tensors.len(), 12);
    let scored = learning::loss_with_segment(&global, &update, &held_out).unwrap();
    assert_eq!(scored, evaluate(&trained, &held_out).unwrap());
    assert!(scored.loss < evaluate(&global, &held_out).unwrap().loss);
}
