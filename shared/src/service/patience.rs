//! How much a line advance may be set back before it gives up, and what it
//! does after each thing that went wrong. Pure: the granter's driver does
//! the reads and writes and reports what it saw; this decides whether to
//! go on, pause, read the counters again or use the cached fronts. So the
//! retry policy is tested on its own, apart from any store.

use std::time::Duration;

/// Setbacks (lost writes, stale fronts) before a wake-up is given back to
/// whatever carries it (the queue, the stream) to be retried.
pub(crate) const SETBACKS_ALLOWED: usize = 16;
/// How long to wait for the line index to show a session heard of directly.
pub(crate) const INDEX_CATCH_UP: Duration = Duration::from_millis(50);

/// What one step of an advance came to, when it did not finish the advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Behind a full event, the backlog hint could not be armed: a slot was
    /// freed (or capacity changed) since the counters were read.
    ArmRaced,
    /// The fronts read placed nobody, but someone may be waiting whom they
    /// could not place yet (a front read in part, a join newer than a read).
    NothingPlaced,
    /// Sessions the plan would admit without a ticket were numbered first:
    /// `progress` if some got a ticket or turned out gone.
    Numbered { progress: bool },
    /// An admission was written and more remains.
    Admitted,
    /// The admission named sessions that were not as read; reading them
    /// again found some gone (`found_gone`) or only moved by a poll.
    Rejected { found_gone: bool },
    /// The counters moved under the write, or it met another transaction.
    Contended,
}

/// What the driver does before its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retry {
    pub pause: Option<Duration>,
    pub read_counters: bool,
}

/// One advance's patience.
#[derive(Debug, Clone)]
pub(crate) struct Patience {
    setbacks: usize,
    /// Steps that made progress by passing over sessions found gone or just
    /// numbered. Under a sale's load the lagging index shows dozens just
    /// admitted by others, so these are not setbacks, but they are bounded
    /// all the same.
    replans: usize,
    use_cache: bool,
}

impl Patience {
    /// `use_cache`: the fronts this instance read before may serve the
    /// first step (a freed slot).
    pub(crate) fn new(use_cache: bool) -> Self {
        Self {
            setbacks: 0,
            replans: 0,
            use_cache,
        }
    }

    /// Whether the advance should give up (and its carrier retry it).
    pub(crate) fn exhausted(&self) -> bool {
        self.setbacks >= SETBACKS_ALLOWED
    }

    /// Whether the next step may plan from the cached fronts.
    pub(crate) fn use_cache(&self) -> bool {
        self.use_cache
    }

    pub(crate) fn setbacks(&self) -> usize {
        self.setbacks
    }

    pub(crate) fn replans(&self) -> usize {
        self.replans
    }

    /// What to do after `outcome`. `salt` spreads the pauses of granters
    /// contending on different things.
    pub(crate) fn after(&mut self, outcome: Outcome, salt: u64) -> Retry {
        let go_on = Retry {
            pause: None,
            read_counters: false,
        };
        match outcome {
            Outcome::ArmRaced => {
                self.setbacks += 1;
                Retry {
                    read_counters: true,
                    ..go_on
                }
            }
            Outcome::NothingPlaced => {
                self.setbacks += 1;
                if self.use_cache {
                    // The cache may be what hid them: read the fronts.
                    self.use_cache = false;
                    go_on
                } else {
                    Retry {
                        pause: Some(INDEX_CATCH_UP),
                        ..go_on
                    }
                }
            }
            Outcome::Numbered { progress } => {
                self.progress_or_setback(progress);
                // They have tickets now, or are known to be gone: plan
                // again from what was read, so the heads move past them.
                self.use_cache = true;
                go_on
            }
            Outcome::Admitted => {
                // More than one write takes, or a front to read further: go
                // on from what this write left.
                self.use_cache = true;
                go_on
            }
            Outcome::Rejected { found_gone } => {
                self.progress_or_setback(found_gone);
                Retry {
                    read_counters: true,
                    ..go_on
                }
            }
            Outcome::Contended => {
                self.setbacks += 1;
                // Another granter admitted, or a slot freed, since the
                // read: step aside a little, differently each time.
                Retry {
                    pause: Some(contention_pause(self.setbacks, salt)),
                    read_counters: true,
                }
            }
        }
    }

    fn progress_or_setback(&mut self, progress: bool) {
        if progress && self.replans < SETBACKS_ALLOWED {
            self.replans += 1;
        } else {
            self.setbacks += 1;
        }
    }
}

/// Exponential backoff with jitter after the n-th setback: 5 ms, 10 ms,
/// 20 ms… (from n = 1) times a factor in [0.5, 1.5) from `salt`, which
/// differs between granters working on different things.
pub(crate) fn contention_pause(setbacks: usize, salt: u64) -> Duration {
    let exponent = setbacks.saturating_sub(1).min(6);
    let base = Duration::from_millis(5 << exponent);
    let rotation = u32::try_from(exponent).unwrap_or(0) * 7;
    let mixed = salt
        .wrapping_add(setbacks as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(rotation);
    let jitter = 0.5 + (mixed % 1000) as f64 / 1000.0;
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exhaust(patience: &mut Patience, outcome: Outcome) -> usize {
        let mut steps = 0;
        while !patience.exhausted() {
            patience.after(outcome, 7);
            steps += 1;
        }
        steps
    }

    #[test]
    fn contention_gives_up_after_the_allowed_setbacks_pausing_longer_each_time() {
        let mut patience = Patience::new(false);
        let pauses: Vec<Duration> = (0..SETBACKS_ALLOWED)
            .map(|_| {
                let retry = patience.after(Outcome::Contended, 7);
                assert!(retry.read_counters);
                retry.pause.unwrap()
            })
            .collect();
        assert!(patience.exhausted());
        assert_eq!(patience.setbacks(), SETBACKS_ALLOWED);
        for (n, pause) in pauses.iter().enumerate() {
            let base = Duration::from_millis(5 << n.min(6));
            assert!(
                *pause >= base / 2 && *pause < base * 3 / 2,
                "pause {n}: {pause:?} (base {base:?})"
            );
        }
    }

    #[test]
    fn passing_over_the_gone_is_progress_but_bounded() {
        let mut patience = Patience::new(false);
        for _ in 0..SETBACKS_ALLOWED {
            let retry = patience.after(Outcome::Rejected { found_gone: true }, 7);
            assert_eq!(
                retry,
                Retry {
                    pause: None,
                    read_counters: true
                }
            );
        }
        assert_eq!(
            (patience.replans(), patience.setbacks()),
            (SETBACKS_ALLOWED, 0)
        );
        assert!(!patience.exhausted());
        // Past the bound, progress costs like a setback.
        assert_eq!(
            exhaust(&mut patience, Outcome::Numbered { progress: true }),
            SETBACKS_ALLOWED
        );
    }

    #[test]
    fn a_rejection_that_found_nobody_gone_and_a_numbering_that_changed_nothing_are_setbacks() {
        let mut patience = Patience::new(false);
        patience.after(Outcome::Rejected { found_gone: false }, 7);
        patience.after(Outcome::Numbered { progress: false }, 7);
        assert_eq!((patience.replans(), patience.setbacks()), (0, 2));
        assert!(
            patience.use_cache(),
            "numbering plans again from what was read"
        );
    }

    #[test]
    fn nothing_placed_drops_the_cache_first_then_waits_for_the_index() {
        let mut patience = Patience::new(true);
        assert_eq!(
            patience.after(Outcome::NothingPlaced, 7),
            Retry {
                pause: None,
                read_counters: false
            }
        );
        assert!(!patience.use_cache());
        assert_eq!(
            patience.after(Outcome::NothingPlaced, 7),
            Retry {
                pause: Some(INDEX_CATCH_UP),
                read_counters: false
            }
        );
        assert_eq!(patience.setbacks(), 2);
    }

    #[test]
    fn an_admission_costs_no_patience_and_goes_on_from_the_cache() {
        let mut patience = Patience::new(false);
        for _ in 0..100 {
            assert_eq!(
                patience.after(Outcome::Admitted, 7),
                Retry {
                    pause: None,
                    read_counters: false
                }
            );
        }
        assert!(patience.use_cache());
        assert_eq!((patience.replans(), patience.setbacks()), (0, 0));
    }

    #[test]
    fn a_lost_race_to_arm_the_hint_reads_the_counters_again() {
        let mut patience = Patience::new(true);
        assert_eq!(exhaust(&mut patience, Outcome::ArmRaced), SETBACKS_ALLOWED);
        assert!(patience.use_cache(), "arming does not touch the fronts");
    }
}
