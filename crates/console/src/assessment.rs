//! The posture assessment the console shows, kept between page views.
//!
//! Posture is a judgement over the whole registry (every agent with its
//! keys, ceiling and use, every task, grant, secret and review): at 10,000
//! agents it takes over half a second, too long to redo on every view. Every
//! state change writes an audit entry in its own transaction, so the log's
//! end tells, by one index lookup, whether anything changed since an
//! assessment began; time alone can also make a finding (a key ages past
//! its threshold), so an assessment also ages out.
//!
//! A view shows the kept assessment while it is current. When it is not, a
//! quick assessment (a small registry) is redone in the view itself, so the
//! page is always exact there; a slow one is shown as it stands, with when
//! it was made and how far the log has moved since, while a new one runs in
//! the background. One runs at a time, and after each the next waits as
//! long as it took, so refreshes use at most half of one core however often
//! the page is viewed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mandate_core::posture::Thresholds;
use mandate_server::AppState;
use mandate_server::routes::posture::{Posture, assess};
use mandate_store::StoreError;
use tokio::sync::Notify;

/// When the console reassesses posture.
#[derive(Debug, Clone, Copy)]
pub struct PostureRefresh {
    /// An assessment that took less than this is redone within the view
    /// whenever it is no longer current; a slower one is redone in the
    /// background.
    pub inline_under: Duration,
    /// An assessment older than this is no longer current even if the log
    /// has not moved: findings depend on the time too.
    pub max_age: Duration,
}

impl Default for PostureRefresh {
    fn default() -> Self {
        PostureRefresh {
            inline_under: Duration::from_millis(50),
            max_age: Duration::from_secs(60),
        }
    }
}

/// One assessment with what it was made from.
#[derive(Debug)]
pub struct Assessed {
    pub posture: Posture,
    /// The log's end when the assessment began: every change it may have
    /// missed has an entry at or past this index.
    pub log_end: u64,
    pub started: Instant,
    pub took: Duration,
}

/// What a view shows.
#[derive(Debug)]
pub struct View {
    pub assessed: Arc<Assessed>,
    /// Set when the assessment shown is no longer current.
    pub behind: Option<Behind>,
}

/// How far the shown assessment is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    /// Entries appended to the log since the assessment began.
    pub entries: u64,
    /// Whether a new assessment is running now.
    pub refreshing: bool,
}

/// What a view does with the assessment kept, if any.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Show,
    ShowAndRefresh,
    Reassess,
}

fn plan(kept: Option<&Assessed>, log_end: u64, now: Instant, r: &PostureRefresh) -> Plan {
    let Some(a) = kept else {
        return Plan::Reassess;
    };
    let current = a.log_end == log_end && now.saturating_duration_since(a.started) < r.max_age;
    if current {
        Plan::Show
    } else if a.took < r.inline_under {
        Plan::Reassess
    } else {
        Plan::ShowAndRefresh
    }
}

#[derive(Default)]
struct Kept {
    latest: Option<Arc<Assessed>>,
    running: bool,
    /// No background assessment starts before this.
    rest_until: Option<Instant>,
}

/// The console's kept posture assessment.
pub struct Assessments {
    refresh: PostureRefresh,
    kept: Mutex<Kept>,
    /// Woken when a background assessment ends, for a first view that
    /// waits for the one started with the server rather than doing its own.
    ended: Notify,
}

impl Assessments {
    pub fn new(refresh: PostureRefresh) -> Self {
        Assessments {
            refresh,
            kept: Mutex::default(),
            ended: Notify::new(),
        }
    }

    /// Starts the first assessment in the background, so that the first
    /// view of a large registry need not wait for it from the start.
    pub fn warm_up(self: &Arc<Self>, app: &AppState) {
        self.refresh_in_background(app, Instant::now());
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic elsewhere cannot leave `Kept` half-written: every update
        // is a single assignment.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The assessment to show now, under the default thresholds.
    pub async fn view(self: &Arc<Self>, app: &AppState) -> Result<View, StoreError> {
        let log_end = app.store.audit_end().await?;
        let now = Instant::now();
        let mut latest = self.kept().latest.clone();
        if latest.is_none() {
            // Registered before looking, so an end in between is not missed.
            let ended = self.ended.notified();
            let running = self.kept().running;
            if running {
                ended.await;
                latest = self.kept().latest.clone();
            }
        }
        match (plan(latest.as_deref(), log_end, now, &self.refresh), latest) {
            (Plan::Show, Some(assessed)) => Ok(View {
                assessed,
                behind: None,
            }),
            (Plan::ShowAndRefresh, Some(assessed)) => {
                let refreshing = self.refresh_in_background(app, now);
                Ok(View {
                    behind: Some(Behind {
                        entries: log_end.saturating_sub(assessed.log_end),
                        refreshing,
                    }),
                    assessed,
                })
            }
            _ => {
                let assessed = Arc::new(assess_from(app, log_end).await?);
                self.keep(assessed.clone());
                Ok(View {
                    assessed,
                    behind: None,
                })
            }
        }
    }

    /// Keeps `a` unless a later-begun assessment is kept already (two
    /// views may reassess at once).
    fn keep(&self, a: Arc<Assessed>) {
        let mut k = self.kept();
        if k.latest.as_ref().is_none_or(|l| l.started <= a.started) {
            k.latest = Some(a);
        }
    }

    /// Starts a background assessment unless one runs or the last one's
    /// rest has not passed; says whether one is running now.
    fn refresh_in_background(self: &Arc<Self>, app: &AppState, now: Instant) -> bool {
        {
            let mut k = self.kept();
            if k.running {
                return true;
            }
            if k.rest_until.is_some_and(|t| now < t) {
                return false;
            }
            k.running = true;
        }
        let (me, app) = (Arc::clone(self), app.clone());
        tokio::spawn(async move {
            let result = match app.store.audit_end().await {
                Ok(end) => assess_from(&app, end).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(a) => {
                    let took = a.took;
                    me.keep(Arc::new(a));
                    let mut k = me.kept();
                    k.rest_until = Some(Instant::now() + took);
                    k.running = false;
                }
                Err(e) => {
                    // The kept one stays shown, marked as behind; the next
                    // view after a pause tries again.
                    let mut k = me.kept();
                    k.rest_until = Some(Instant::now() + Duration::from_secs(5));
                    k.running = false;
                    tracing::warn!(error = %e, "posture reassessment failed");
                }
            }
            me.ended.notify_waiters();
        });
        true
    }
}

async fn assess_from(app: &AppState, log_end: u64) -> Result<Assessed, StoreError> {
    let started = Instant::now();
    let posture = assess(app, mandate_server::now(), Thresholds::default()).await?;
    Ok(Assessed {
        posture,
        log_end,
        started,
        took: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn assessed(log_end: u64, started: Instant, took: Duration) -> Assessed {
        Assessed {
            posture: Posture {
                at: mandate_server::now(),
                thresholds: Thresholds::default(),
                summary: BTreeMap::new(),
                findings: Vec::new(),
            },
            log_end,
            started,
            took,
        }
    }

    #[test]
    fn nothing_kept_means_assess() {
        let r = PostureRefresh::default();
        assert_eq!(plan(None, 0, Instant::now(), &r), Plan::Reassess);
    }

    #[test]
    fn current_only_while_the_log_stands_and_the_assessment_is_young() {
        let r = PostureRefresh::default();
        let t0 = Instant::now();
        for took in [Duration::from_millis(1), Duration::from_secs(2)] {
            let a = assessed(100, t0, took);
            let slow = took >= r.inline_under;
            let stale = if slow {
                Plan::ShowAndRefresh
            } else {
                Plan::Reassess
            };
            assert_eq!(plan(Some(&a), 100, t0, &r), Plan::Show);
            assert_eq!(
                plan(Some(&a), 100, t0 + r.max_age - Duration::from_millis(1), &r),
                Plan::Show
            );
            // One more entry in the log, or an assessment at its max age.
            assert_eq!(plan(Some(&a), 101, t0, &r), stale);
            assert_eq!(plan(Some(&a), 100, t0 + r.max_age, &r), stale);
            // A log that shrank (restored from a backup) is not current either.
            assert_eq!(plan(Some(&a), 99, t0, &r), stale);
        }
    }
}
