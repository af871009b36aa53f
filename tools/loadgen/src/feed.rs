//! Change-feed watchers that run beside the scenarios: each holds a
//! `WatchRequestEvents` stream of the load generator's tenant open for the
//! whole run and reads every event, so that a run measures what a
//! consumer of the feed costs the calls it watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request_service_client::DataSubjectRequestServiceClient;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// The watchers of a run and what they have read.
pub struct FeedWatchers {
    received: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
}

impl FeedWatchers {
    /// Opens `n` streams from the start of the feed, over `channels` in
    /// turn.
    pub async fn start(
        n: u32,
        channels: &[Channel],
        authorization: &MetadataValue<Ascii>,
    ) -> Result<Self, String> {
        let received = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (i, channel) in channels.iter().cycle().take(n as usize).enumerate() {
            let mut request = Request::new(v1::WatchRequestEventsRequest::default());
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
            let mut stream = DataSubjectRequestServiceClient::new(channel.clone())
                .watch_request_events(request)
                .await
                .map_err(|s| format!("feed watcher {i}: {}", s.message()))?
                .into_inner();
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(None) => return Ok(()),
                        Err(s) => return Err(format!("feed watcher {i}: {}", s.message())),
                    }
                }
            }));
        }
        Ok(Self { received, tasks })
    }

    /// Events read so far by all the watchers together.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until the watchers have read nothing new for `quiet` (they
    /// caught up), then closes them; what they read in all, or the first
    /// stream that failed.
    pub async fn finish(self, quiet: Duration) -> Result<u64, String> {
        let mut last = self.received();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.received();
            if now == last {
                break;
            }
            last = now;
        }
        for task in self.tasks {
            if task.is_finished() {
                task.await.map_err(|e| e.to_string())??;
            } else {
                task.abort();
            }
        }
        Ok(last)
    }
}
