//! `--device` on the miner and the coordinator: the CPU is the default, a GPU is refused
//! with its reason before anything starts (this build has no CUDA, as CI's), and a name that
//! is no device is a usage error.

use std::process::{Command, Output};

fn trainchain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainchain"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(not(feature = "cuda"))]
#[test]
fn a_gpu_is_refused_by_a_binary_without_cuda_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("miner.key");
    let roles: [Vec<&str>; 2] = [
        vec![
            "miner",
            "--coordinator",
            "http://127.0.0.1:9",
            "--key",
            key.to_str().unwrap(),
            "--device",
            "cuda:1",
        ],
        vec![
            "coordinator",
            "--data-dir",
            data.to_str().unwrap(),
            "--device",
            "cuda",
        ],
    ];
    for args in roles {
        let out = trainchain(&args);
        assert!(!out.status.success(), "{args:?}");
        let message = stderr(&out);
        assert!(
            message.contains("device cuda") && message.contains("built without CUDA support"),
            "{args:?}: {message}"
        );
        // Refused before the key or the data directory is read.
        assert!(!message.contains("loading"), "{args:?}: {message}");
    }
    assert!(!data.exists());
}

#[test]
fn an_unknown_device_is_a_usage_error_naming_the_choices() {
    let out = trainchain(&[
        "miner",
        "--coordinator",
        "http://127.0.0.1:9",
        "--key",
        "k",
        "--device",
        "tpu",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("unknown device \"tpu\"") && message.contains("cuda:N"),
        "{message}"
    );
}

#[test]
fn the_help_names_the_device_flag() {
    for role in ["miner", "coordinator"] {
        let out = trainchain(&[role, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("--device <cpu|cuda[:N]>"), "{role}: {help}");
        assert!(help.contains("[default: cpu]"), "{role}: {help}");
    }
}
