//! Retrying calls to the coordinator and the node with bounded exponential backoff, so a miner
//! rides out a restart of either.

use crate::error::MinerError;
use coordinator::client::ClientError;
use node::rpc::client::RpcClientError;
use std::future::Future;
use std::time::Duration;
use tracing::debug;

/// First wait after a failed call: short, because on loopback a restarting service is usually
/// back within a second.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Longest wait between two attempts: keeps a miner responsive to a recovered service within
/// a fraction of a (20-minute) cycle.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Attempts before giving up: with the waits above, about two minutes, which covers a service
/// restart (a coordinator reloads its dataset and store in seconds) but not an outage.
pub const ATTEMPTS_MAX: u32 = 30;

/// The wait before attempt `attempt + 1` (0-based): doubling from [`BACKOFF_INITIAL`], capped.
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF_INITIAL
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX)
}

/// Whether a failure may go away by itself (the service is down or restarting).
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for ClientError {
    fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            // 503 not_open: a (re)started coordinator has not opened its cycle yet; 429: rate
            // limited; 5xx: the coordinator failed to reach its node or store for a moment.
            ClientError::Api { status, .. } => *status == 429 || *status >= 500,
            ClientError::Decode(_) | ClientError::TooLarge => false,
        }
    }
}

impl Transient for RpcClientError {
    fn is_transient(&self) -> bool {
        // A cookie that cannot be read yet (node starting) or a connection error.
        matches!(
            self,
            RpcClientError::Transport { .. } | RpcClientError::Cookie { .. }
        )
    }
}

impl Transient for MinerError {
    fn is_transient(&self) -> bool {
        match self {
            MinerError::Coordinator(e) => e.is_transient(),
            MinerError::Node(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Runs `call` until it succeeds, fails permanently, or [`ATTEMPTS_MAX`] attempts failed.
pub async fn retry<T, E, F, Fut>(operation: &str, call: F) -> Result<T, MinerError>
where
    E: Transient + Into<MinerError> + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_up_to(operation, ATTEMPTS_MAX, call).await
}

/// [`retry`] with another bound on the attempts.
pub async fn retry_up_to<T, E, F, Fut>(
    operation: &str,
    attempts_max: u32,
    mut call: F,
) -> Result<T, MinerError>
where
    E: Transient + Into<MinerError> + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() => {
                attempt += 1;
                if attempt >= attempts_max {
                    return Err(MinerError::RetriesExhausted {
                        operation: operation.to_owned(),
                        attempts: attempt,
                        last: error.to_string(),
                    });
                }
                let wait = backoff(attempt - 1);
                debug!(operation, attempt, ?wait, %error, "retrying");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), BACKOFF_INITIAL);
        assert_eq!(backoff(1), BACKOFF_INITIAL * 2);
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    #[tokio::test]
    async fn transient_errors_are_retried_and_permanent_ones_are_not() {
        let mut calls = 0;
        let value = retry("flaky", || {
            calls += 1;
            let fail = calls < 3;
            async move {
                if fail {
                    Err(ClientError::Transport("refused".into()))
                } else {
                    Ok(7)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!((value, calls), (7, 3));

        let mut calls = 0;
        let error = retry("refused", || {
            calls += 1;
            async { Err::<(), _>(ClientError::Decode("garbage".into())) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(error, MinerError::Coordinator(_)), "{error}");

        let error = retry_up_to("down", 3, || async {
            Err::<(), _>(ClientError::Transport("refused".into()))
        })
        .await
        .unwrap_err();
        assert!(
            matches!(error, MinerError::RetriesExhausted { attempts: 3, .. }),
            "{error}"
        );
    }
}
