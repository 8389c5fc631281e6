//! An on-sale's state, and the operator's controls that move it.
//!
//! ```text
//!   SCHEDULED ──open (or opensAt)──▶ OPEN ──pause──▶ PAUSED ──resume──▶ OPEN
//!                                      │               │
//!                                      └────close──────┴──▶ CLOSED   (final)
//! ```
//! - `SCHEDULED`: before `opensAt`. Joins are taken into the pre-queue
//!   (no position yet); at the opening everyone in it gets a place in the
//!   order of a seeded random draw (`domain::draw`), ahead of everyone who
//!   joins after.
//! - `OPEN`: joins are taken, free slots admit the front of the line.
//! - `PAUSED` ("queue everyone"): joins and polls go on, nobody is admitted;
//!   freed slots wait for `resume`, which admits in line order at once.
//! - `CLOSED`: a join is refused (`event_closed`) and creates nothing;
//!   everyone already in line keeps their place and is admitted as slots
//!   free, as when open.
//!
//! An event nobody scheduled or controlled is `OPEN` (nothing is stored
//! until an operator acts).

/// Where an on-sale stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum EventState {
    Scheduled,
    #[default]
    Open,
    Paused,
    Closed,
}

impl EventState {
    pub const ALL: [EventState; 4] = [Self::Scheduled, Self::Open, Self::Paused, Self::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Open => "OPEN",
            Self::Paused => "PAUSED",
            Self::Closed => "CLOSED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Free slots admit the front of the line (a closed event drains;
    /// a scheduled one has not opened).
    pub fn admits(self) -> bool {
        matches!(self, Self::Open | Self::Closed)
    }

    /// A new join may take a place.
    pub fn takes_joins(self) -> bool {
        self != Self::Closed
    }

    /// The state `control` leads to. Asking for the state the event is
    /// already in is allowed and changes nothing (operators and scripts
    /// retry); a closed event takes no control at all; a scheduled event
    /// only opens (closing it would admit its pre-queue at once, which is
    /// not what cancelling a sale means); `open` is not `resume`.
    pub fn after(self, control: Control) -> Result<EventState, RefusedControl> {
        let to = match control {
            Control::Open | Control::Resume => Self::Open,
            Control::Pause => Self::Paused,
            Control::Close => Self::Closed,
        };
        let refused = Err(RefusedControl {
            from: self,
            control,
        });
        match (self, control) {
            (Self::Closed, Control::Close) => Ok(Self::Closed),
            (Self::Closed, _) => refused,
            (Self::Scheduled, Control::Open) => Ok(Self::Open),
            (Self::Scheduled, _) => refused,
            (Self::Paused, Control::Open) => refused,
            (Self::Open, Control::Open) => Ok(Self::Open),
            _ => Ok(to),
        }
    }
}

impl std::fmt::Display for EventState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator may ask of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Control {
    Open,
    Pause,
    Resume,
    Close,
}

impl Control {
    pub const ALL: [Control; 4] = [Self::Open, Self::Pause, Self::Resume, Self::Close];

    /// The verb, as the CLI and the admin API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Close => "close",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// A control the state machine has no arrow for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} event cannot {}: {}", control.as_str(), self.why())]
pub struct RefusedControl {
    pub from: EventState,
    pub control: Control,
}

impl RefusedControl {
    fn why(&self) -> &'static str {
        match self.from {
            EventState::Closed => "closing is final",
            EventState::Scheduled => "it has not opened yet (open it first)",
            _ => "it is open already (resume a paused event)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_follow_the_diagram() {
        use Control::{Close, Pause, Resume};
        use EventState::*;
        let cases = [
            (Scheduled, Control::Open, Ok(Open)),
            (Open, Control::Open, Ok(Open)),
            (Open, Pause, Ok(Paused)),
            (Open, Resume, Ok(Open)),
            (Open, Close, Ok(Closed)),
            (Paused, Pause, Ok(Paused)),
            (Paused, Resume, Ok(Open)),
            (Paused, Close, Ok(Closed)),
            (Closed, Close, Ok(Closed)),
            (
                Closed,
                Pause,
                Err(RefusedControl {
                    from: Closed,
                    control: Pause,
                }),
            ),
            (
                Closed,
                Resume,
                Err(RefusedControl {
                    from: Closed,
                    control: Resume,
                }),
            ),
        ];
        for (from, control, expected) in cases {
            assert_eq!(from.after(control), expected, "{from} {control:?}");
        }
        for control in [Pause, Resume, Close] {
            assert_eq!(
                Scheduled.after(control),
                Err(RefusedControl {
                    from: Scheduled,
                    control
                })
            );
        }
        assert!(Paused.after(Control::Open).is_err(), "open is not resume");
        assert!(Closed.after(Control::Open).is_err());
        assert_eq!(
            Closed.after(Resume).unwrap_err().to_string(),
            "a CLOSED event cannot resume: closing is final"
        );
        assert_eq!(
            Scheduled.after(Pause).unwrap_err().to_string(),
            "a SCHEDULED event cannot pause: it has not opened yet (open it first)"
        );
    }

    #[test]
    fn only_open_and_closed_events_admit_and_only_a_closed_one_refuses_joins() {
        let admitting: Vec<_> = EventState::ALL.into_iter().filter(|s| s.admits()).collect();
        assert_eq!(admitting, vec![EventState::Open, EventState::Closed]);
        let joining: Vec<_> = EventState::ALL
            .into_iter()
            .filter(|s| s.takes_joins())
            .collect();
        assert_eq!(
            joining,
            vec![EventState::Scheduled, EventState::Open, EventState::Paused]
        );
    }

    #[test]
    fn states_and_controls_round_trip_through_their_names() {
        for state in EventState::ALL {
            assert_eq!(EventState::parse(state.as_str()), Some(state));
        }
        for control in Control::ALL {
            assert_eq!(Control::parse(control.as_str()), Some(control));
        }
        assert_eq!(EventState::parse("open"), None);
        assert_eq!(Control::parse("explode"), None);
    }
}
