//! `trainchain job`: post a training job to a coordinator, follow it, cancel it, and fetch the
//! model it produced. A client of the coordinator's API only (`coordinator-api`).

use anyhow::{bail, Context, Result};
use coordinator_api::api::{JobData, JobFormat, JobRequest, JobStatus, StopRule, TrainHints};
use coordinator_api::CoordinatorClient;
use primitives::Hash256;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Post a job: a model spec, its data and when to stop. Prints the job's id and status.
    Submit(Box<SubmitArgs>),
    /// Every job on the coordinator, the coordinator's own workload first.
    List(Coordinator),
    /// One job's terms and progress (JSON).
    Status(JobArgs),
    /// Cancel your job: a queued one never runs, a running one ends at its next evaluation.
    Cancel(CancelArgs),
    /// Download a job's newest model: `<out>/job-<id prefix>.safetensors` and its card
    /// `job-<id prefix>.json`.
    Fetch(FetchArgs),
}

#[derive(clap::Args)]
pub struct Coordinator {
    /// The coordinator's HTTP API, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub coordinator: String,
}

#[derive(clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub coordinator: Coordinator,
    /// The job's id (as `job submit` or `job list` print it).
    pub id: Hash256,
}

#[derive(clap::Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// The owner's secret key file (the one that posted the job).
    #[arg(long)]
    pub key: PathBuf,
}

#[derive(clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Directory to write the model and its card to (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub coordinator: Coordinator,
    /// The owner's secret key file (`trainchain wallet new` writes one): it signs the job, and
    /// only it can cancel it.
    #[arg(long)]
    pub key: PathBuf,
    /// A name for the job (at most 64 characters).
    #[arg(long)]
    pub name: String,
    /// The model: mlp:W1,W2,..., cnn:C1,C2[,kK] or lm:DIM,LAYERS,HEADS.
    #[arg(long)]
    pub model: String,
    /// A dataset every coordinator ships (digits, wordnet) instead of files of your own.
    #[arg(long, conflicts_with_all = ["train", "held_out", "test"])]
    pub dataset: Option<String>,
    /// Your training data, sharded to the miners: a CSV file (features, then an integer
    /// label) or, with --format text, any UTF-8 text for a byte-level language model.
    #[arg(long, required_unless_present = "dataset")]
    pub train: Option<PathBuf>,
    /// Your held-out set, which only the coordinator receives and scores updates on. Default:
    /// a secret split of --train.
    #[arg(long)]
    pub held_out: Option<PathBuf>,
    /// Your test set, for the coordinator only: the reported accuracy is on it. Default: a
    /// secret split of --train.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// How the files are read: csv or text. Default: text for lm: models, csv otherwise.
    #[arg(long, value_parser = ["csv", "text"])]
    pub format: Option<String>,
    /// At most this many cycles.
    #[arg(long)]
    pub cycles: u64,
    /// Stop as soon as the merged model's held-out loss is at or below this (nats).
    #[arg(long)]
    pub target_loss: Option<f64>,
    /// Stop as soon as the merged model's test accuracy is at or above this (0 to 1).
    #[arg(long)]
    pub target_accuracy: Option<f64>,
    /// Learning rate, momentum and batch as LR,MOMENTUM,BATCH (default: what suits the model).
    #[arg(long, value_name = "LR,MOMENTUM,BATCH", value_parser = parse_hints)]
    pub hints: Option<TrainHints>,
    /// Seed of the job's first model.
    #[arg(long, default_value_t = 1)]
    pub model_seed: u64,
}

fn parse_hints(text: &str) -> std::result::Result<TrainHints, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [lr, momentum, batch] = parts[..] else {
        return Err(format!(
            "{text:?}: expected LR,MOMENTUM,BATCH, e.g. 0.05,0.9,32"
        ));
    };
    Ok(TrainHints {
        lr: lr.parse().map_err(|_| format!("{lr:?} is not a number"))?,
        momentum: momentum
            .parse()
            .map_err(|_| format!("{momentum:?} is not a number"))?,
        batch: batch
            .parse()
            .map_err(|_| format!("{batch:?} is not a whole number"))?,
    })
}

fn client(coordinator: &Coordinator) -> Result<CoordinatorClient> {
    CoordinatorClient::new(&coordinator.coordinator)
        .with_context(|| format!("coordinator {}", coordinator.coordinator))
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| {
        format!(
            "{} is not UTF-8 text (jobs carry their files as text)",
            path.display()
        )
    })
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

pub fn run(command: Command) -> Result<()> {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    match command {
        Command::Submit(args) => {
            let args = *args;
            let key = wallet::key_file::load(&args.key)
                .with_context(|| format!("loading owner key {}", args.key.display()))?;
            let data = match (&args.dataset, &args.train) {
                (Some(dataset), _) => JobData::Shipped {
                    dataset: dataset.clone(),
                },
                (None, Some(train)) => {
                    let text_model = args.model.starts_with("lm:");
                    let format = match args.format.as_deref() {
                        Some("text") => JobFormat::Text,
                        Some(_) => JobFormat::Csv,
                        None if text_model => JobFormat::Text,
                        None => JobFormat::Csv,
                    };
                    JobData::Upload {
                        format,
                        train: read_text(train)?,
                        held_out: args.held_out.as_deref().map(read_text).transpose()?,
                        test: args.test.as_deref().map(read_text).transpose()?,
                    }
                }
                (None, None) => bail!("give --dataset or --train"),
            };
            let request = JobRequest {
                owner: key.public_key(&secp),
                name: args.name,
                model: args.model,
                data,
                hints: args.hints,
                model_seed: args.model_seed,
                stop: StopRule {
                    cycles: args.cycles,
                    target_held_out_loss: args.target_loss,
                    target_accuracy: args.target_accuracy,
                },
            };
            if let Some(problem) = request.stop.problem() {
                bail!("{problem}");
            }
            let status = runtime()?.block_on(async {
                client(&args.coordinator)?
                    .submit_job(&secp, &key, &request)
                    .await
                    .context("posting the job")
            })?;
            print_json(&status)
        }
        Command::List(coordinator) => {
            let jobs = runtime()?
                .block_on(async { Ok::<_, anyhow::Error>(client(&coordinator)?.jobs().await?) })?;
            for job in &jobs {
                println!("{}", line(job));
            }
            Ok(())
        }
        Command::Status(args) => {
            let status = runtime()?.block_on(async {
                Ok::<_, anyhow::Error>(client(&args.coordinator)?.job(&args.id).await?)
            })?;
            print_json(&status)
        }
        Command::Cancel(args) => {
            let key = wallet::key_file::load(&args.key)
                .with_context(|| format!("loading owner key {}", args.key.display()))?;
            let status = runtime()?.block_on(async {
                Ok::<_, anyhow::Error>(
                    client(&args.job.coordinator)?
                        .cancel_job(&secp, &key, &args.job.id)
                        .await?,
                )
            })?;
            print_json(&status)
        }
        Command::Fetch(args) => {
            let id = args.job.id;
            let (status, bytes, card) = runtime()?.block_on(async {
                let c = client(&args.job.coordinator)?;
                Ok::<_, anyhow::Error>((
                    c.job(&id).await?,
                    c.job_model(&id).await?,
                    c.job_card(&id).await?,
                ))
            })?;
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
            let stem = format!("job-{}", &id.to_string()[..16]);
            let weights = args.out.join(format!("{stem}.safetensors"));
            let card_path = args.out.join(format!("{stem}.json"));
            std::fs::write(&weights, &bytes)
                .with_context(|| format!("writing {}", weights.display()))?;
            std::fs::write(&card_path, serde_json::to_vec_pretty(&card)?)
                .with_context(|| format!("writing {}", card_path.display()))?;
            println!(
                "{} ({:?}, {} cycles): {} and {}",
                status.terms.name,
                status.state,
                status.cycles_run,
                weights.display(),
                card_path.display()
            );
            Ok(())
        }
    }
}

/// One job in a line: id, state, cycles, name, model and its latest loss.
fn line(job: &JobStatus) -> String {
    let loss = job
        .held_out_loss
        .map_or_else(|| "-".to_owned(), |l| format!("{l:.4}"));
    let cycles = job.terms.stop.map_or_else(
        || format!("{}", job.cycles_run),
        |r| format!("{}/{}", job.cycles_run, r.cycles),
    );
    format!(
        "{}  {:<9} cycles {:<9} loss {:<8} {}",
        job.id,
        format!("{:?}", job.state).to_lowercase(),
        cycles,
        loss,
        job.terms.name
    )
}
