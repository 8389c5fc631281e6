//! An exhaustive model check of the admission protocol (stateright).
//!
//! The model is abstract: it does not call the services, it restates what
//! they do as small atomic steps over one event, a few users, two granters
//! and the reconciler, so the checker can try every interleaving and every
//! crash point of a small configuration.
//!
//! What the parts stand for in the real system:
//!
//! - the *event item* is the DynamoDB `EVENT#` item: `active`, `admitted`,
//!   `capacity` and the backlog hint (`armed`, and `marked`: a clearing under
//!   way since some logical time);
//! - the *index* is the line's GSI: a user's entry shows up some time after
//!   the join and goes away some time after the user stops waiting (the lag
//!   is unbounded, except where the reconciler's clear relies on a bound);
//! - the *queue* is the SQS FIFO join queue (either granter takes any
//!   message; a message a crashed granter held comes back after the
//!   visibility timeout);
//! - the *stream* is the table's stream as the granter's second event
//!   source: session inserts, and counter changes that free a slot, in
//!   order, one record at a time; a change whose new image has the hint off
//!   is filtered out and wakes nobody;
//! - a granter *advance* is reads, a plan and one conditional write (a
//!   transaction), then the acknowledgement of its wake-up (deleting the
//!   message, checkpointing the stream);
//! - the *reconciler* is the sweeper's reconciliation: it repairs what the
//!   wake-ups missed, and marks, then clears, a hint nobody needs.
//!
//! Reductions. Each keeps every reachable outcome; the argument is given
//! where it is not a plain renaming:
//!
//! - users are interchangeable until they join, so they join in index
//!   order: user `i` is the `i`-th to join, its place in line is `i`, and
//!   the logical clock is the number of joins so far;
//! - the granters are interchangeable: the exhaustive run explores one
//!   state per permutation of them (stateright's symmetry reduction);
//! - taking a wake-up and reading the event item are one step: the take
//!   changes nothing anyone else reads;
//! - reading the index and the write that follows are one step: the set of
//!   visible entries changes only when the index catches up (a join is
//!   invisible, a leave or an admission leaves a stale entry), and a
//!   catch-up between the read and the write gives what the same catch-up
//!   right after the write gives;
//! - a successful write and the acknowledgement are one step, and a crash
//!   right after the write is its own action (the wake-up comes back with
//!   the write applied): nothing else can tell the moment in between;
//! - a read keeps only what its advance uses later, relative to the event
//!   item as it is now: a read whose write can never succeed again (the
//!   capacity or, when checked, the admission count moved on; both only
//!   grow) forgets the values it saw, and while it can succeed, its
//!   `active` only matters as "an exit happened since";
//! - an `Inserted(u)` record of a user who stopped waiting leaves the
//!   stream at once (a granter taking it would look the session up and
//!   skip it), and a failed write's dropped users are forgotten once
//!   nothing could show them to the plan again;
//! - whether a granter ever crashed is recorded but not part of the state's
//!   identity (it would double the states for one example).

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use stateright::{Checker, Expectation, HasDiscoveries, Model, Path, Property};

/// The most users a configuration may have (the masks and arrays are sized
/// for it).
pub const MAX_USERS: usize = 4;
/// The most granter instances a configuration may have.
pub const MAX_GRANTERS: usize = 2;
/// One insert per join, one counter change per exit and one for the raise.
const STREAM_CAPACITY: usize = 2 * MAX_USERS + 1;

/// Never more active users than the capacity.
pub const CAPACITY: &str = "capacity: #ACTIVE <= capacity";
/// The event's counters match the users, and nobody is admitted twice.
pub const COUNTERS: &str =
    "counters: active == #ACTIVE, admitted == #ever admitted, nobody admitted twice";
/// An admission never passes over an earlier user its plan could see.
pub const ORDER: &str =
    "order: no admission passes over an earlier WAITING user visible in its plan's view";
/// At quiescence nobody waits while a slot is free (no reconciler needed).
pub const LIVENESS: &str = "liveness at quiescence: nobody WAITING while a slot is free";
/// At quiescence everyone who waits is covered by the hint: the next exit
/// wakes a granter, and the next reconciliation (its view caught up) admits
/// them if a slot is free already.
pub const HINT_COVERS: &str = "hint coverage at quiescence: someone WAITING => hint armed";
/// Sometimes: a user is admitted.
pub const SOME_ADMISSION: &str = "sometimes: a user is admitted";
/// Sometimes: a user is admitted after an exit.
pub const SOME_ADMISSION_AFTER_EXIT: &str = "sometimes: a user is admitted after an exit";
/// Sometimes: a granter crashes.
pub const SOME_CRASH: &str = "sometimes: a granter crashes";
/// Sometimes: the reconciler clears the hint.
pub const SOME_CLEAR: &str = "sometimes: the hint is cleared";
/// Sometimes: someone waits while the event is full.
pub const SOME_WAIT_WHILE_FULL: &str = "sometimes: a user WAITING while the event is full";
/// Sometimes: the raised capacity is used.
pub const SOME_RAISE_USED: &str = "sometimes: more users ACTIVE than the initial capacity";
/// Sometimes: quiescent with someone still waiting (so the quiescence
/// properties are not vacuous).
pub const SOME_QUIET_WAIT: &str = "sometimes: quiescent with a user WAITING";

/// How far the index may lag behind the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IndexLag {
    /// Any lag: a granter woken by the stream may not see a user who joined
    /// long before the record was written (only the clear waits it out).
    #[default]
    Unbounded,
    /// The index is assumed to catch up faster than the stream delivers: a
    /// stream record reaches a granter only once every user who joined
    /// before the record was written is in the index. Isolates the hint
    /// protocol from the lag (join messages are not held back).
    ShorterThanStream,
}

/// Switches that put known bugs back, to show the checker finds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The old design: an admitting write whose plan leaves nobody waiting
    /// clears the hint.
    pub granter_clears_hint: bool,
    /// Arming (alone or in an admitting write) without the proof that no
    /// exit happened since the read (`active >= active seen`).
    pub no_arm_proof: bool,
    /// The admitting write without `active <= capacity - k` and
    /// `admitted == admitted seen`.
    pub no_capacity_condition: bool,
    /// The reconciler clears without waiting out the index lag.
    pub clear_ignores_lag: bool,
    /// The plan ignores the user the wake-up names (index only).
    pub granter_ignores_known: bool,
    /// The plan takes its candidates latest first (shows `ORDER` can fail).
    pub unordered_plan: bool,
    /// The admitting write does not check that the admitted still wait
    /// (shows `COUNTERS` can fail).
    pub no_waiting_condition: bool,
}

/// The configuration to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Users (at most `MAX_USERS`).
    pub users: u8,
    /// The event's capacity at the start.
    pub capacity: u8,
    /// An admin may raise the capacity by one, once.
    pub raise_capacity: bool,
    /// Granter instances (1 or 2).
    pub granters: u8,
    /// Whether the reconciler runs at all.
    pub reconciler: bool,
    /// Whether granters and the reconciler may crash between steps.
    pub crashes: bool,
    /// Failed conditions before an advance gives up and its wake-up is
    /// retried.
    pub max_setbacks: u8,
    pub lag: IndexLag,
    pub faults: Faults,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            users: 4,
            capacity: 1,
            raise_capacity: true,
            granters: 2,
            reconciler: true,
            crashes: true,
            max_setbacks: 2,
            lag: IndexLag::Unbounded,
            faults: Faults::default(),
        }
    }
}

impl Config {
    fn user_count(&self) -> usize {
        usize::from(self.users).min(MAX_USERS)
    }

    fn granter_count(&self) -> usize {
        usize::from(self.granters).clamp(1, MAX_GRANTERS)
    }

    fn setback_limit(&self) -> u8 {
        self.max_setbacks.max(1)
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} users, capacity {}{}, {} granter(s), {}, {}, give up after {} setbacks, lag {:?}",
            self.user_count(),
            self.capacity,
            if self.raise_capacity {
                " (one raise by 1)"
            } else {
                ""
            },
            self.granter_count(),
            if self.reconciler {
                "reconciler"
            } else {
                "no reconciler"
            },
            if self.crashes {
                "crashes"
            } else {
                "no crashes"
            },
            self.setback_limit(),
            self.lag,
        )?;
        if self.faults != Faults::default() {
            write!(f, ", {:?}", self.faults)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
enum Status {
    /// Not joined yet.
    #[default]
    Out,
    Waiting,
    Active,
    /// Left while waiting.
    Left,
    /// Left after being admitted (an exit: checkout done, expired, ...).
    Exited,
}

/// The user's entry in the line index, as queries see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
enum Entry {
    /// Not there (never added, or the removal propagated).
    #[default]
    Absent,
    /// Added (the user waits) but not visible yet.
    Pending,
    /// Visible, and the user waits.
    Visible,
    /// Still visible, but the user no longer waits (removal pending).
    Stale,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct User {
    status: Status,
    entry: Entry,
}

/// The event item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Event {
    active: u8,
    admitted: u8,
    capacity: u8,
    /// The backlog hint: someone waits, exits must wake a granter.
    armed: bool,
    /// A clearing under way, started at this logical time.
    marked: Option<u8>,
}

impl Event {
    /// Armed and no clearing under way: a granter that sees this need not
    /// arm again.
    fn firm(&self) -> bool {
        self.armed && self.marked.is_none()
    }

    fn free(&self) -> u8 {
        self.capacity.saturating_sub(self.active)
    }
}

/// What a write's conditions compare with: the event item as read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Seen {
    /// The write can never succeed any more: the values are forgotten.
    doomed: bool,
    admitted: u8,
    capacity: u8,
    active: u8,
}

/// A read of the event item, as far as the rest of the advance uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Snap {
    free: u8,
    firm: bool,
    /// Kept only where it matters (the reconciler's mark; the old design's
    /// clearing granter).
    armed: bool,
    /// Kept only for the reconciler's clear.
    marked: Option<u8>,
    seen: Seen,
}

impl Snap {
    fn read(event: &Event) -> Self {
        Self {
            free: event.free(),
            firm: event.firm(),
            armed: event.armed,
            marked: event.marked,
            seen: Seen {
                doomed: false,
                admitted: event.admitted,
                capacity: event.capacity,
                active: event.active,
            },
        }
    }
}

/// A planned admitting write (steps 4 and 5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Write {
    admit: u8,
    k: u8,
    /// Someone still waits and the hint was not firm: arm it.
    arm: bool,
    /// Fault `granter_clears_hint`: nobody left, clear the hint.
    clear: bool,
    /// Visible in the plan's view, not admitted, earlier than someone
    /// admitted: must not be waiting when the write applies (`ORDER`).
    passed_over: u8,
}

/// A stream record that passed the filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Record {
    /// `Some(u)`: `Inserted(u)`; `None`: `CountersChanged { armed: true }`.
    user: Option<u8>,
    /// Users below this joined before the record was written (kept only
    /// when the lag is bounded by the stream).
    after_joins: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Stream {
    records: [Record; STREAM_CAPACITY],
    len: u8,
}

impl Stream {
    fn head(&self) -> Option<Record> {
        (self.len > 0).then_some(self.records[0])
    }

    fn push(&mut self, record: Record) {
        let len = usize::from(self.len);
        if len < STREAM_CAPACITY {
            self.records[len] = record;
            self.len += 1;
        }
    }

    fn remove(&mut self, index: usize) {
        let len = usize::from(self.len);
        if index < len {
            self.records.copy_within(index + 1..len, index);
            self.records[len - 1] = Record::default();
            self.len -= 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().take(usize::from(self.len))
    }
}

/// The wake-up a granter holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Held {
    #[default]
    Nothing,
    /// A join message (taken off the queue, invisible to the other granter).
    Message(u8),
    /// The stream's head record.
    Record,
}

/// A granter's next step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum GranterStep {
    #[default]
    Idle,
    /// Step 1 again, after a setback.
    ReadCounters,
    /// Step 2: the event was full and the known user is not covered: arm.
    ArmWrite(Seen),
    /// Steps 3 to 5: slots were free; read the index, plan, write.
    Admit(Snap),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Granter {
    held: Held,
    step: GranterStep,
    setbacks: u8,
    /// Users a failed write showed not to wait any more.
    dropped: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
enum ReconcilerStep {
    /// Not running; its next step starts a run with a read of the event.
    #[default]
    Idle,
    /// The read again, after a setback.
    ReadCounters,
    /// Read the index, decide, write.
    Decide(Snap),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Reconciler {
    step: ReconcilerStep,
    setbacks: u8,
    dropped: u8,
}

/// Facts about the history, for the properties (not protocol state).
#[derive(Clone, Copy, Debug, Default)]
struct Ghost {
    /// Not part of the state's identity (see the module comment).
    crashed: bool,
    cleared: bool,
    /// Set by a write that broke `ORDER` (only ever in a faulty model).
    order_broken: bool,
    /// Set by a write that admitted someone admitted before.
    admitted_twice: bool,
}

/// One state of the whole system.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    users: [User; MAX_USERS],
    event: Event,
    /// Join messages on the queue (a mask of users).
    queue: u8,
    stream: Stream,
    granters: [Granter; MAX_GRANTERS],
    reconciler: Reconciler,
    ghost: Ghost,
}

type Identity<'a> = (
    &'a [User; MAX_USERS],
    &'a Event,
    u8,
    &'a Stream,
    &'a [Granter; MAX_GRANTERS],
    &'a Reconciler,
    (bool, bool, bool),
);

impl State {
    /// Everything but `ghost.crashed`.
    fn identity(&self) -> Identity<'_> {
        (
            &self.users,
            &self.event,
            self.queue,
            &self.stream,
            &self.granters,
            &self.reconciler,
            (
                self.ghost.cleared,
                self.ghost.order_broken,
                self.ghost.admitted_twice,
            ),
        )
    }
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for State {}

impl Hash for State {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        self.identity().hash(hasher);
    }
}

fn bit(u: usize) -> u8 {
    1u8 << u
}

fn small(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

fn count(mask: u8) -> u8 {
    small(mask.count_ones() as usize)
}

/// The users below `u` (earlier in line).
fn before(u: usize) -> u8 {
    bit(u).wrapping_sub(1)
}

impl State {
    /// How many users joined: the logical clock.
    fn joins(&self) -> u8 {
        small(
            self.users
                .iter()
                .filter(|u| u.status != Status::Out)
                .count(),
        )
    }

    fn mask(&self, pick: impl Fn(&User) -> bool) -> u8 {
        self.users
            .iter()
            .enumerate()
            .filter(|(_, u)| pick(u))
            .fold(0, |m, (i, _)| m | bit(i))
    }

    fn waiting(&self) -> u8 {
        self.mask(|u| u.status == Status::Waiting)
    }

    /// The index entries a query sees (stale ones included).
    fn visible(&self) -> u8 {
        self.mask(|u| matches!(u.entry, Entry::Visible | Entry::Stale))
    }

    fn active_users(&self) -> u8 {
        count(self.mask(|u| u.status == Status::Active))
    }

    fn ever_admitted(&self) -> u8 {
        count(self.mask(|u| matches!(u.status, Status::Active | Status::Exited)))
    }

    fn stream_held(&self) -> bool {
        self.granters.iter().any(|g| g.held == Held::Record)
    }

    /// Nothing pending anywhere: no message, no record, nobody mid-step,
    /// the index caught up.
    fn quiescent(&self) -> bool {
        self.queue == 0
            && self.stream.len == 0
            && self.granters.iter().all(|g| g.step == GranterStep::Idle)
            && self.reconciler.step == ReconcilerStep::Idle
            && self
                .users
                .iter()
                .all(|u| matches!(u.entry, Entry::Absent | Entry::Visible))
    }

    /// Every user who joined before logical time `time` is in the index.
    fn settled_before(&self, time: u8) -> bool {
        self.users
            .iter()
            .take(usize::from(time))
            .all(|u| u.entry != Entry::Pending)
    }

    /// The user the wake-up a granter holds names.
    fn held_user(&self, g: usize) -> Option<usize> {
        match self.granters[g].held {
            Held::Nothing => None,
            Held::Message(u) => Some(usize::from(u)),
            Held::Record => self.stream.head().and_then(|r| r.user).map(usize::from),
        }
    }

    /// `u` stopped waiting: its insert record, unless a granter holds it,
    /// would only be skipped.
    fn forget_insert(&mut self, u: usize) {
        let held = self.stream_held();
        let index = self
            .stream
            .iter()
            .enumerate()
            .position(|(i, r)| r.user == Some(small(u)) && !(held && i == 0));
        if let Some(index) = index {
            self.stream.remove(index);
        }
    }

    /// The same state with the granters in a canonical order (symmetry).
    pub fn representative(&self) -> Self {
        let mut s = *self;
        s.granters.sort_unstable();
        s
    }
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

/// One atomic step of someone in the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A user joins (the next in index order).
    Join(u8),
    /// The index catches up for a user (its add shows, or its removal).
    Propagate(u8),
    /// A user leaves the line, or exits after admission.
    Leave(u8),
    /// An admin raises the capacity.
    RaiseCapacity,
    /// A granter takes a join message and reads the event item.
    TakeMessage { granter: u8, user: u8 },
    /// A granter takes the stream's head record and reads the event item.
    TakeRecord { granter: u8 },
    /// A granter's next step (a write that applies also acknowledges).
    Step { granter: u8 },
    /// A granter crashes before its next step.
    Crash { granter: u8 },
    /// A granter's write applies, then it crashes before acknowledging.
    CrashAfterWrite { granter: u8 },
    /// The reconciler's next step (from idle: a run starts).
    Reconcile,
    /// The reconciler crashes mid-run.
    ReconcilerCrash,
}

/// Collects what happens in a step, for rendering paths (off when checking).
struct Say<'a>(Option<&'a mut Vec<String>>);

impl Say<'_> {
    fn line(&mut self, text: impl FnOnce() -> String) {
        if let Some(out) = self.0.as_mut() {
            out.push(text());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    Applied,
    Setback,
    GiveUp,
}

enum Outcome {
    Applied,
    /// These planned users no longer wait.
    NotWaiting(u8),
    /// The event item changed since the read.
    Conflict(&'static str),
}

/// Narrates the reconciler's read of the index and what it decided.
fn said(say: &mut Say<'_>, view: u8, then: impl FnOnce() -> String) {
    say.line(|| format!("reads the index (visible {}): {}", who(view), then()));
}

fn who(mask: u8) -> String {
    let names: Vec<String> = (0..MAX_USERS)
        .filter(|&u| mask & bit(u) != 0)
        .map(|u| format!("u{u}"))
        .collect();
    if names.is_empty() {
        "nobody".to_owned()
    } else {
        names.join(", ")
    }
}

fn hint(event: &Event) -> String {
    match (event.armed, event.marked) {
        (false, _) => "hint off".to_owned(),
        (true, None) => "hint armed (firm)".to_owned(),
        (true, Some(t)) => format!("hint armed, marked at t{t} (not firm)"),
    }
}

fn counters(event: &Event) -> String {
    format!(
        "active {}/{}, admitted {}, {}",
        event.active,
        event.capacity,
        event.admitted,
        hint(event)
    )
}

/// The admission protocol over one event, as a stateright model.
#[derive(Clone, Debug)]
pub struct AdmissionModel {
    pub config: Config,
}

impl AdmissionModel {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    fn faults(&self) -> Faults {
        self.config.faults
    }

    /// Whether the admitting write checks `admitted == admitted seen`.
    fn checks_admitted(&self) -> bool {
        !self.faults().no_capacity_condition
    }

    /// The user a granter's wake-up names, unless a failed write showed
    /// they no longer wait.
    fn known(s: &State, g: usize) -> Option<usize> {
        s.held_user(g)
            .filter(|&u| s.granters[g].dropped & bit(u) == 0)
    }

    /// Step 4: the candidates are the view and the known user, in place
    /// order; the first `free` are admitted. `None`: nothing to write.
    fn plan(&self, snap: &Snap, view: u8, known: Option<usize>, dropped: u8) -> Option<Write> {
        let faults = self.faults();
        let mut candidates = view;
        if let Some(u) = known
            && !faults.granter_ignores_known
        {
            candidates |= bit(u);
        }
        candidates &= !dropped;
        let users = self.config.user_count();
        let mut order: [usize; MAX_USERS] = [0, 1, 2, 3];
        if faults.unordered_plan {
            order[..users].reverse();
        }
        let (mut admit, mut k, mut still_waits) = (0u8, 0u8, false);
        for &u in order[..users].iter().filter(|&&u| candidates & bit(u) != 0) {
            if k < snap.free {
                admit |= bit(u);
                k += 1;
            } else {
                still_waits = true;
            }
        }
        let arm = still_waits && !snap.firm;
        let clear = faults.granter_clears_hint && !still_waits && snap.armed;
        if k == 0 && !arm && !clear {
            return None;
        }
        let last = (0..users).rev().find(|&u| admit & bit(u) != 0);
        Some(Write {
            admit,
            k,
            arm,
            clear,
            passed_over: last.map_or(0, |x| view & !admit & before(x)),
        })
    }

    /// A stream record reaches a granter (the lag assumption, if any).
    fn deliverable(&self, s: &State, record: Record) -> bool {
        match self.config.lag {
            IndexLag::Unbounded => true,
            IndexLag::ShorterThanStream => s.settled_before(record.after_joins),
        }
    }

    fn record(&self, s: &State, user: Option<u8>) -> Record {
        let after_joins = match (self.config.lag, user) {
            (IndexLag::Unbounded, _) => 0,
            (IndexLag::ShorterThanStream, Some(u)) => u.saturating_add(1),
            (IndexLag::ShorterThanStream, None) => s.joins(),
        };
        Record { user, after_joins }
    }

    /// A counter change passes the stream filter only if the hint, as the
    /// write left it, is armed.
    fn counters_changed(&self, t: &mut State) -> bool {
        if t.event.armed {
            let record = self.record(t, None);
            t.stream.push(record);
        }
        t.event.armed
    }

    /// The conditional arm: only if no exit (and no raise) happened since
    /// the read, since such an exit may have woken nobody.
    fn arm_write(&self, t: &mut State, seen: &Seen) -> Outcome {
        let event = t.event;
        if seen.doomed || event.capacity != seen.capacity {
            return Outcome::Conflict("capacity changed since the read");
        }
        if !self.faults().no_arm_proof && event.active < seen.active {
            return Outcome::Conflict("active dropped: an exit since the read");
        }
        t.event.armed = true;
        t.event.marked = None;
        Outcome::Applied
    }

    /// Step 5: one transaction over the admitted sessions and the event.
    fn admit_write(&self, t: &mut State, w: &Write, seen: &Seen) -> Outcome {
        let faults = self.faults();
        let waiting = t.waiting();
        if !faults.no_waiting_condition && w.admit & !waiting != 0 {
            return Outcome::NotWaiting(w.admit & !waiting);
        }
        let event = t.event;
        if seen.doomed {
            return Outcome::Conflict("the event item changed since the read");
        }
        if event.capacity != seen.capacity {
            return Outcome::Conflict("capacity changed since the read");
        }
        if self.checks_admitted() && event.admitted != seen.admitted {
            return Outcome::Conflict("another admission since the read");
        }
        if !faults.no_capacity_condition && event.active.saturating_add(w.k) > event.capacity {
            return Outcome::Conflict("not enough free slots");
        }
        if w.arm && !faults.no_arm_proof && event.active < seen.active {
            return Outcome::Conflict("active dropped: an exit since the read");
        }
        // The history the properties judge, from the truth at the moment
        // the write applies.
        if w.passed_over & waiting != 0 {
            t.ghost.order_broken = true;
        }
        for x in (0..MAX_USERS).filter(|&x| w.admit & bit(x) != 0) {
            let user = &mut t.users[x];
            if matches!(user.status, Status::Active | Status::Exited) {
                t.ghost.admitted_twice = true;
            }
            user.status = Status::Active;
            user.entry = match user.entry {
                Entry::Visible | Entry::Stale => Entry::Stale,
                Entry::Pending | Entry::Absent => Entry::Absent,
            };
            t.forget_insert(x);
        }
        t.event.active = t.event.active.saturating_add(w.k);
        t.event.admitted = t.event.admitted.saturating_add(w.k);
        if w.arm {
            t.event.armed = true;
            t.event.marked = None;
        }
        if w.clear {
            t.event.armed = false;
            t.event.marked = None;
        }
        Outcome::Applied
    }

    /// The advance is over: delete the message, checkpoint the record.
    fn finish(t: &mut State, g: usize) {
        if t.granters[g].held == Held::Record {
            t.stream.remove(0);
        }
        t.granters[g] = Granter::default();
    }

    /// The advance is abandoned (crash or giving up): the message comes
    /// back after its visibility timeout, the record stays at the head.
    fn release(t: &mut State, g: usize) {
        if let Held::Message(u) = t.granters[g].held {
            t.queue |= bit(usize::from(u));
        }
        t.granters[g] = Granter::default();
    }

    fn granter_setback(&self, t: &mut State, g: usize, say: &mut Say<'_>) {
        let granter = &mut t.granters[g];
        granter.setbacks = granter.setbacks.saturating_add(1);
        if granter.setbacks >= self.config.setback_limit() {
            Self::release(t, g);
            say.line(|| "gives up: its wake-up is retried".to_owned());
        } else {
            granter.step = GranterStep::ReadCounters;
            say.line(|| "reads again".to_owned());
        }
    }

    /// Steps 1 and 2.
    fn granter_read_counters(t: &mut State, g: usize, say: &mut Say<'_>) {
        let event = t.event;
        let known = Self::known(t, g);
        if event.free() > 0 {
            t.granters[g].step = GranterStep::Admit(Snap::read(&event));
            say.line(|| format!("reads counters ({}): a slot is free", counters(&event)));
        } else if known.is_some() && !event.firm() {
            t.granters[g].step = GranterStep::ArmWrite(Snap::read(&event).seen);
            say.line(|| format!("reads counters ({}): full, will arm", counters(&event)));
        } else {
            Self::finish(t, g);
            say.line(|| {
                format!(
                    "reads counters ({}): full and {}: done, wake-up acknowledged",
                    counters(&event),
                    if known.is_some() {
                        "hint firm"
                    } else {
                        "no known user"
                    }
                )
            });
        }
    }

    fn describe_write(w: &Write) -> String {
        format!(
            "admit {}{}",
            who(w.admit),
            if w.arm {
                " and arm (someone still waits)"
            } else if w.clear {
                " and clear the hint (nobody left)"
            } else {
                ""
            }
        )
    }

    /// A granter's write (step 2's arm, or steps 3 to 5). `None`: no write
    /// to make.
    fn granter_write(&self, t: &mut State, g: usize, say: &mut Say<'_>) -> Option<After> {
        let granter = t.granters[g];
        let outcome = match granter.step {
            GranterStep::ArmWrite(seen) => {
                say.line(|| "ArmWrite".to_owned());
                self.arm_write(t, &seen)
            }
            GranterStep::Admit(snap) => {
                let view = t.visible();
                let known = Self::known(t, g);
                let write = self.plan(&snap, view, known, granter.dropped);
                say.line(|| {
                    format!(
                        "reads the index (visible {}; known {}): {}",
                        who(view),
                        known.map_or("nobody".to_owned(), |u| format!("u{u}")),
                        write.as_ref().map_or("nothing to write".to_owned(), |w| {
                            format!("AdmitWrite to {}", Self::describe_write(w))
                        })
                    )
                });
                self.admit_write(t, &write?, &snap.seen)
            }
            GranterStep::Idle | GranterStep::ReadCounters => return None,
        };
        Some(self.judge(t, outcome, say, |t, gone| t.granters[g].dropped |= gone))
    }

    /// What a write's outcome means for the advance. A failed condition on
    /// the event item gives the wake-up back at once: a retry would carry
    /// nothing over to its next read, so it is the same as taking the
    /// wake-up again (and the model lets anyone take it, which covers the
    /// retry). A failure that showed users gone is a setback: the advance
    /// drops them and reads again, until it has had too many.
    fn judge(
        &self,
        t: &mut State,
        outcome: Outcome,
        say: &mut Say<'_>,
        drop: impl FnOnce(&mut State, u8),
    ) -> After {
        match outcome {
            Outcome::Applied => {
                let after = t.event;
                say.line(|| format!("applies ({})", counters(&after)));
                After::Applied
            }
            Outcome::NotWaiting(gone) => {
                drop(t, gone);
                say.line(|| format!("fails: {} no longer waiting", who(gone)));
                After::Setback
            }
            Outcome::Conflict(why) => {
                say.line(|| format!("fails ({why})"));
                After::GiveUp
            }
        }
    }

    fn granter_step(&self, t: &mut State, g: usize, say: &mut Say<'_>) -> Option<()> {
        match t.granters[g].step {
            GranterStep::Idle => return None,
            GranterStep::ReadCounters => Self::granter_read_counters(t, g, say),
            GranterStep::ArmWrite(_) | GranterStep::Admit(_) => match self.granter_write(t, g, say)
            {
                None => {
                    Self::finish(t, g);
                    say.line(|| "done, wake-up acknowledged".to_owned());
                }
                Some(After::Applied) => {
                    Self::finish(t, g);
                    say.line(|| "wake-up acknowledged".to_owned());
                }
                Some(After::Setback) => self.granter_setback(t, g, say),
                Some(After::GiveUp) => {
                    Self::release(t, g);
                    say.line(|| "gives its wake-up back to be retried".to_owned());
                }
            },
        }
        Some(())
    }

    fn reconciler_setback(&self, t: &mut State, say: &mut Say<'_>) {
        let r = &mut t.reconciler;
        r.setbacks = r.setbacks.saturating_add(1);
        if r.setbacks >= self.config.setback_limit() {
            t.reconciler = Reconciler::default();
            say.line(|| "gives up until its next run".to_owned());
        } else {
            r.step = ReconcilerStep::ReadCounters;
            say.line(|| "reads again".to_owned());
        }
    }

    /// The reconciler reads the index, decides and writes.
    #[allow(clippy::too_many_lines)]
    fn reconciler_decide(&self, t: &mut State, snap: &Snap, say: &mut Say<'_>) {
        let r = t.reconciler;
        let view = t.visible() & !r.dropped;
        if view != 0 && snap.free > 0 {
            // Someone visibly waits and a slot is free: an advance.
            let Some(write) = self.plan(snap, view, None, r.dropped) else {
                t.reconciler = Reconciler::default();
                return;
            };
            said(say, view, || {
                format!("AdmitWrite to {}", Self::describe_write(&write))
            });
            let outcome = self.admit_write(t, &write, &snap.seen);
            match self.judge(t, outcome, say, |t, gone| t.reconciler.dropped |= gone) {
                After::Setback => self.reconciler_setback(t, say),
                After::Applied | After::GiveUp => t.reconciler = Reconciler::default(),
            }
        } else if view != 0 && !snap.firm {
            said(say, view, || {
                "someone waits, the hint is not firm: ArmWrite".to_owned()
            });
            let outcome = self.arm_write(t, &snap.seen);
            match self.judge(t, outcome, say, |_, _| {}) {
                After::Setback => self.reconciler_setback(t, say),
                After::Applied | After::GiveUp => t.reconciler = Reconciler::default(),
            }
        } else if view == 0 && snap.firm {
            t.reconciler = Reconciler::default();
            if t.event.firm() {
                let now = t.joins();
                t.event.marked = Some(now);
                said(say, view, || {
                    format!("nobody waits: MarkEmpty applies (marked at t{now})")
                });
            } else {
                said(say, view, || {
                    "nobody waits: MarkEmpty fails (the hint changed)".to_owned()
                });
            }
        } else if view == 0
            && let Some(e) = snap.marked
            && (self.faults().clear_ignores_lag || t.settled_before(e))
        {
            // The real reconciler clears a long delay after the mark,
            // longer than any index lag: everyone who joined before the
            // mark shows in this view.
            t.reconciler = Reconciler::default();
            if t.event.marked == Some(e) {
                t.event.armed = false;
                t.event.marked = None;
                t.ghost.cleared = true;
                said(say, view, || {
                    format!("nobody waits, marked at t{e}: Clear applies, exits wake nobody now")
                });
            } else {
                said(say, view, || {
                    format!("nobody waits, marked at t{e}: Clear fails (armed again)")
                });
            }
        } else {
            t.reconciler = Reconciler::default();
            said(say, view, || "nothing to do".to_owned());
        }
    }

    fn reconcile(&self, t: &mut State, say: &mut Say<'_>) {
        match t.reconciler.step {
            ReconcilerStep::Idle | ReconcilerStep::ReadCounters => {
                let event = t.event;
                t.reconciler.step = ReconcilerStep::Decide(Snap::read(&event));
                say.line(|| format!("reads counters ({})", counters(&event)));
            }
            ReconcilerStep::Decide(snap) => self.reconciler_decide(t, &snap, say),
        }
    }

    fn user_action(&self, t: &mut State, action: Action, say: &mut Say<'_>) -> Option<()> {
        let users = self.config.user_count();
        match action {
            Action::Join(u) => {
                let i = usize::from(u);
                if i >= users || i != usize::from(t.joins()) {
                    return None;
                }
                t.users[i] = User {
                    status: Status::Waiting,
                    entry: Entry::Pending,
                };
                t.queue |= bit(i);
                let record = self.record(t, Some(u));
                t.stream.push(record);
                say.line(|| {
                    format!(
                        "u{u} joins (place {u}): WAITING, not yet in the index; \
                         join message queued; stream += Inserted(u{u})"
                    )
                });
            }
            Action::Propagate(u) => {
                let i = usize::from(u);
                let user = t.users.get_mut(i).filter(|_| i < users)?;
                match user.entry {
                    Entry::Pending => {
                        user.entry = Entry::Visible;
                        say.line(|| format!("the index catches up: u{u} visible"));
                    }
                    Entry::Stale => {
                        user.entry = Entry::Absent;
                        say.line(|| format!("the index catches up: u{u} gone"));
                    }
                    Entry::Absent | Entry::Visible => return None,
                }
            }
            Action::Leave(u) => {
                let i = usize::from(u);
                let user = t.users.get_mut(i).filter(|_| i < users)?;
                match user.status {
                    Status::Waiting => {
                        user.status = Status::Left;
                        user.entry = match user.entry {
                            Entry::Visible | Entry::Stale => Entry::Stale,
                            Entry::Pending | Entry::Absent => Entry::Absent,
                        };
                        t.forget_insert(i);
                        say.line(|| format!("u{u} leaves the line"));
                    }
                    Status::Active => {
                        user.status = Status::Exited;
                        t.event.active = t.event.active.saturating_sub(1);
                        let woke = self.counters_changed(t);
                        let active = t.event.active;
                        say.line(|| {
                            format!(
                                "u{u} exits: active {active}; {}",
                                if woke {
                                    "stream += CountersChanged (hint armed)"
                                } else {
                                    "hint off: the record is filtered out, wakes nobody"
                                }
                            )
                        });
                    }
                    Status::Out | Status::Left | Status::Exited => return None,
                }
            }
            Action::RaiseCapacity => {
                if !self.config.raise_capacity || t.event.capacity != self.config.capacity {
                    return None;
                }
                t.event.capacity = t.event.capacity.saturating_add(1);
                let woke = self.counters_changed(t);
                let capacity = t.event.capacity;
                say.line(|| {
                    format!(
                        "admin raises capacity to {capacity}; {}",
                        if woke {
                            "stream += CountersChanged (hint armed)"
                        } else {
                            "hint off: the record is filtered out, wakes nobody"
                        }
                    )
                });
            }
            _ => return None,
        }
        Some(())
    }

    fn apply(&self, s: &State, action: Action, say: &mut Say<'_>) -> Option<State> {
        let mut t = *s;
        let users = self.config.user_count();
        let granters = self.config.granter_count();
        let idle = |g: usize| g < granters && s.granters[g].step == GranterStep::Idle;
        let busy = |g: usize| g < granters && s.granters[g].step != GranterStep::Idle;
        match action {
            Action::Join(_) | Action::Propagate(_) | Action::Leave(_) | Action::RaiseCapacity => {
                self.user_action(&mut t, action, say)?;
            }
            Action::TakeMessage { granter, user } => {
                let (g, u) = (usize::from(granter), usize::from(user));
                if !idle(g) || u >= users || s.queue & bit(u) == 0 {
                    return None;
                }
                t.queue &= !bit(u);
                t.granters[g] = Granter {
                    held: Held::Message(user),
                    ..Granter::default()
                };
                say.line(|| format!("G{g} takes the join message of u{u}"));
                Self::granter_read_counters(&mut t, g, say);
            }
            Action::TakeRecord { granter } => {
                let g = usize::from(granter);
                let head = s.stream.head()?;
                if !idle(g) || s.stream_held() || !self.deliverable(s, head) {
                    return None;
                }
                match head.user {
                    Some(u) if s.users[usize::from(u)].status != Status::Waiting => {
                        // The granter looks the session up: nothing to do.
                        t.stream.remove(0);
                        say.line(|| {
                            format!("G{g} takes Inserted(u{u}): u{u} no longer waits, skipped")
                        });
                    }
                    _ => {
                        t.granters[g] = Granter {
                            held: Held::Record,
                            ..Granter::default()
                        };
                        say.line(|| match head.user {
                            Some(u) => format!("G{g} takes Inserted(u{u}) from the stream"),
                            None => format!("G{g} takes CountersChanged from the stream"),
                        });
                        Self::granter_read_counters(&mut t, g, say);
                    }
                }
            }
            Action::Step { granter } => {
                let g = usize::from(granter);
                if !busy(g) {
                    return None;
                }
                say.line(|| format!("G{g}"));
                self.granter_step(&mut t, g, say)?;
            }
            Action::Crash { granter } => {
                let g = usize::from(granter);
                if !self.config.crashes || !busy(g) {
                    return None;
                }
                Self::release(&mut t, g);
                t.ghost.crashed = true;
                say.line(|| {
                    format!(
                        "G{g} crashes: {}",
                        match s.granters[g].held {
                            Held::Message(u) =>
                                format!("the join message of u{u} returns to the queue"),
                            Held::Record =>
                                "the stream record stays to be delivered again".to_owned(),
                            Held::Nothing => "it held nothing".to_owned(),
                        }
                    )
                });
            }
            Action::CrashAfterWrite { granter } => {
                let g = usize::from(granter);
                if !self.config.crashes || !busy(g) {
                    return None;
                }
                say.line(|| format!("G{g}"));
                // Only a write that applies makes this differ from a crash
                // before the write.
                if self.granter_write(&mut t, g, say)? != After::Applied {
                    return None;
                }
                Self::release(&mut t, g);
                t.ghost.crashed = true;
                say.line(|| "then crashes before acknowledging: its wake-up comes back".to_owned());
            }
            Action::Reconcile => {
                if !self.config.reconciler {
                    return None;
                }
                say.line(|| "R".to_owned());
                self.reconcile(&mut t, say);
            }
            Action::ReconcilerCrash => {
                if !self.config.crashes || s.reconciler.step == ReconcilerStep::Idle {
                    return None;
                }
                t.reconciler = Reconciler::default();
                say.line(|| "R crashes mid-run".to_owned());
            }
        }
        self.normalize(&mut t);
        Some(t)
    }

    /// Forgets what no later step can use (see the module comment).
    fn normalize(&self, t: &mut State) {
        let event = t.event;
        let checks_admitted = self.checks_admitted();
        let faults = self.faults();
        // A read for an admitting write (free > 0): doomed once the
        // capacity or the admission count moved on; while not, `active`
        // only went down (admissions would have moved the count), so only
        // "an exit since" matters for the arm proof.
        let for_admission = |seen: &mut Seen| {
            if seen.doomed {
                return;
            }
            if seen.capacity != event.capacity
                || (checks_admitted && seen.admitted != event.admitted)
            {
                *seen = Seen {
                    doomed: true,
                    ..Seen::default()
                };
            } else if faults.no_arm_proof {
                seen.active = 0;
            } else if checks_admitted {
                seen.active = seen.active.min(event.active.saturating_add(1));
            }
        };
        // A read for an arm (full): only the capacity dooms it, as an exit
        // can be followed by an admission that fills the slot again.
        let for_arm = |seen: &mut Seen| {
            seen.admitted = 0;
            if !seen.doomed && seen.capacity != event.capacity {
                *seen = Seen {
                    doomed: true,
                    ..Seen::default()
                };
            }
            if faults.no_arm_proof {
                seen.active = 0;
            }
        };
        for g in 0..self.config.granter_count() {
            let visible = t.visible();
            let held = t.held_user(g).map_or(0, bit);
            let granter = &mut t.granters[g];
            // A dropped user no longer waits, so its entry never shows
            // again once gone; only the index or the wake-up could put it
            // back among the candidates.
            granter.dropped &= visible | held;
            match &mut granter.step {
                GranterStep::Admit(snap) => {
                    snap.marked = None;
                    if !faults.granter_clears_hint {
                        snap.armed = false;
                    }
                    for_admission(&mut snap.seen);
                }
                GranterStep::ArmWrite(seen) => for_arm(seen),
                GranterStep::Idle | GranterStep::ReadCounters => {}
            }
        }
        let visible = t.visible();
        let r = &mut t.reconciler;
        r.dropped &= visible;
        if let ReconcilerStep::Decide(snap) = &mut r.step {
            if snap.free > 0 {
                for_admission(&mut snap.seen);
            } else {
                for_arm(&mut snap.seen);
            }
        }
    }

    /// One line describing a state.
    pub fn describe(&self, s: &State) -> String {
        let users: Vec<String> = (0..self.config.user_count())
            .map(|u| {
                let user = s.users[u];
                let status = match user.status {
                    Status::Out => "not joined",
                    Status::Waiting => "WAITING",
                    Status::Active => "ACTIVE",
                    Status::Left => "LEFT",
                    Status::Exited => "EXITED",
                };
                let entry = match user.entry {
                    Entry::Absent => "",
                    Entry::Pending => " (index: pending)",
                    Entry::Visible => " (index: visible)",
                    Entry::Stale => " (index: stale)",
                };
                format!("u{u} {status}{entry}")
            })
            .collect();
        let stream: Vec<String> = s
            .stream
            .iter()
            .map(|r| match r.user {
                Some(u) => format!("Inserted(u{u})"),
                None => "CountersChanged".to_owned(),
            })
            .collect();
        let granters: Vec<String> = (0..self.config.granter_count())
            .map(|g| match s.granters[g].held {
                Held::Nothing => format!("G{g} idle"),
                Held::Message(u) => format!("G{g} busy (message u{u})"),
                Held::Record => format!("G{g} busy (stream head)"),
            })
            .collect();
        format!(
            "{}; {}; queue {{{}}}; stream [{}]; {}; R {}",
            counters(&s.event),
            users.join(", "),
            who(s.queue),
            stream.join(", "),
            granters.join(", "),
            if s.reconciler.step == ReconcilerStep::Idle {
                "idle"
            } else {
                "busy"
            },
        )
    }

    /// A path as numbered lines, ending with its last state.
    pub fn render(&self, path: &Path<State, Action>) -> Vec<String> {
        let steps = path.clone().into_vec();
        let mut lines = Vec::new();
        for (n, (state, action)) in steps.iter().enumerate() {
            let Some(action) = action else {
                lines.push(format!("  => {}", self.describe(state)));
                continue;
            };
            let mut said = Vec::new();
            let text = match self.apply(state, *action, &mut Say(Some(&mut said))) {
                Some(_) => said.join(": "),
                None => format!("{action:?} (not enabled)"),
            };
            lines.push(format!("{:>3}. {text}", n + 1));
        }
        lines
    }
}

impl Model for AdmissionModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            event: Event {
                capacity: self.config.capacity,
                ..Event::default()
            },
            ..State::default()
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let users = self.config.user_count();
        let joins = usize::from(s.joins());
        if joins < users {
            actions.push(Action::Join(small(joins)));
        }
        for u in 0..users {
            let user = s.users[u];
            if matches!(user.status, Status::Waiting | Status::Active) {
                actions.push(Action::Leave(small(u)));
            }
            if matches!(user.entry, Entry::Pending | Entry::Stale) {
                actions.push(Action::Propagate(small(u)));
            }
        }
        if self.config.raise_capacity && s.event.capacity == self.config.capacity {
            actions.push(Action::RaiseCapacity);
        }
        let stream_free =
            !s.stream_held() && s.stream.head().is_some_and(|r| self.deliverable(s, r));
        for g in 0..self.config.granter_count() {
            let granter = small(g);
            match s.granters[g].step {
                GranterStep::Idle => {
                    for u in (0..users).filter(|&u| s.queue & bit(u) != 0) {
                        actions.push(Action::TakeMessage {
                            granter,
                            user: small(u),
                        });
                    }
                    if stream_free {
                        actions.push(Action::TakeRecord { granter });
                    }
                }
                step => {
                    actions.push(Action::Step { granter });
                    if self.config.crashes {
                        actions.push(Action::Crash { granter });
                        if matches!(step, GranterStep::ArmWrite(_) | GranterStep::Admit(_)) {
                            actions.push(Action::CrashAfterWrite { granter });
                        }
                    }
                }
            }
        }
        if self.config.reconciler {
            actions.push(Action::Reconcile);
            if self.config.crashes && s.reconciler.step != ReconcilerStep::Idle {
                actions.push(Action::ReconcilerCrash);
            }
        }
    }

    fn next_state(&self, s: &State, action: Action) -> Option<State> {
        self.apply(s, action, &mut Say(None))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always(CAPACITY, |_, s: &State| {
                s.active_users() <= s.event.capacity
            }),
            Property::always(COUNTERS, |_, s: &State| {
                s.event.active == s.active_users()
                    && s.event.admitted == s.ever_admitted()
                    && !s.ghost.admitted_twice
            }),
            Property::always(ORDER, |_, s: &State| !s.ghost.order_broken),
            Property::always(LIVENESS, |_, s: &State| {
                !(s.quiescent() && s.waiting() != 0 && s.event.free() > 0)
            }),
            Property::always(HINT_COVERS, |_, s: &State| {
                !(s.quiescent() && s.waiting() != 0 && !s.event.armed)
            }),
            Property::sometimes(SOME_ADMISSION, |_, s: &State| s.event.admitted > 0),
            // More admissions than slots ever existed: one of them came
            // after an exit (active never exceeds the capacity).
            Property::sometimes(SOME_ADMISSION_AFTER_EXIT, |_, s: &State| {
                s.event.admitted > s.event.capacity
            }),
            Property::sometimes(SOME_WAIT_WHILE_FULL, |_, s: &State| {
                s.waiting() != 0 && s.event.free() == 0
            }),
            Property::sometimes(SOME_QUIET_WAIT, |_, s: &State| {
                s.quiescent() && s.waiting() != 0
            }),
        ];
        if self.config.crashes {
            properties.push(Property::sometimes(SOME_CRASH, |_, s: &State| {
                s.ghost.crashed
            }));
        }
        if self.config.reconciler {
            properties.push(Property::sometimes(SOME_CLEAR, |_, s: &State| {
                s.ghost.cleared
            }));
        }
        if self.config.raise_capacity {
            properties.push(Property::sometimes(
                SOME_RAISE_USED,
                |m: &Self, s: &State| s.active_users() > m.config.capacity,
            ));
        }
        properties
    }
}

// ---------------------------------------------------------------------------
// Running the check
// ---------------------------------------------------------------------------

/// Whether a property must hold everywhere or be reached somewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Always,
    Sometimes,
}

/// What the check found for one property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub property: &'static str,
    pub kind: Kind,
    /// The path to the discovery, as text: a counterexample for `Always`,
    /// an example for `Sometimes`. `None`: not found.
    pub path: Option<Vec<String>>,
}

impl Verdict {
    /// `Always`: no counterexample; `Sometimes`: an example.
    pub fn ok(&self) -> bool {
        match self.kind {
            Kind::Always => self.path.is_none(),
            Kind::Sometimes => self.path.is_some(),
        }
    }
}

/// What a check explored and found.
#[derive(Clone, Debug)]
pub struct Report {
    pub config: Config,
    /// Every reachable state was visited (otherwise the check stopped at
    /// the discovery it was looking for).
    pub complete: bool,
    /// Unique states (with the granters' symmetry reduced, for `check`).
    pub unique_states: usize,
    pub generated_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    pub verdicts: Vec<Verdict>,
}

impl Report {
    pub fn verdict(&self, property: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.property == property)
    }

    /// The counterexample to an `Always` property, if one was found.
    pub fn counterexample(&self, property: &str) -> Option<&[String]> {
        self.verdict(property)
            .filter(|v| v.kind == Kind::Always)
            .and_then(|v| v.path.as_deref())
    }

    /// Whether an `Always` property held everywhere explored.
    pub fn holds(&self, property: &str) -> bool {
        self.verdict(property)
            .is_some_and(|v| v.kind == Kind::Always && v.path.is_none())
    }

    /// Properties that failed: a counterexample, or (exhaustively) no
    /// example.
    pub fn failures(&self) -> Vec<&'static str> {
        self.verdicts
            .iter()
            .filter(|v| !v.ok() && (v.kind == Kind::Always || self.complete))
            .map(|v| v.property)
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "admission model: {}", self.config)?;
        writeln!(
            f,
            "  {} unique states ({} generated), max depth {}, {:.1?}, {}",
            self.unique_states,
            self.generated_states,
            self.max_depth,
            self.elapsed,
            if self.complete {
                "exhaustive"
            } else {
                "stopped at the discovery"
            }
        )?;
        for v in &self.verdicts {
            let mark = match (v.kind, v.path.is_some()) {
                (Kind::Always, false) => "holds     ",
                (Kind::Always, true) => "VIOLATED  ",
                (Kind::Sometimes, true) => "reached   ",
                (Kind::Sometimes, false) if self.complete => "UNREACHED ",
                (Kind::Sometimes, false) => "not looked",
            };
            writeln!(f, "  {mark}{}", v.property)?;
            if v.kind == Kind::Always
                && let Some(path) = &v.path
            {
                for line in path {
                    writeln!(f, "      {line}")?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Search {
    /// Depth first over the granters' permutation classes, on every core.
    Exhaustive,
    /// Breadth first on one thread, until a discovery for the property.
    Shortest(&'static str),
}

fn run(config: &Config, search: Search) -> Report {
    let started = Instant::now();
    let model = AdmissionModel::new(*config);
    let properties = model.properties();
    let finish = match search {
        Search::Exhaustive => HasDiscoveries::All,
        Search::Shortest(name) => HasDiscoveries::AnyOf(BTreeSet::from([name])),
    };
    let builder = model.clone().checker().finish_when(finish.clone());
    let (discoveries, unique_states, generated_states, max_depth) = match search {
        Search::Exhaustive => {
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            let checker = builder
                .threads(threads)
                .symmetry_fn(State::representative)
                .spawn_dfs()
                .join();
            (
                checker.discoveries(),
                checker.unique_state_count(),
                checker.state_count(),
                checker.max_depth(),
            )
        }
        Search::Shortest(_) => {
            let checker = builder.spawn_bfs().join();
            (
                checker.discoveries(),
                checker.unique_state_count(),
                checker.state_count(),
                checker.max_depth(),
            )
        }
    };
    let elapsed = started.elapsed();
    let found: BTreeSet<&'static str> = discoveries.keys().copied().collect();
    let verdicts = properties
        .iter()
        .map(|p| Verdict {
            property: p.name,
            kind: match p.expectation {
                Expectation::Sometimes => Kind::Sometimes,
                Expectation::Always | Expectation::Eventually => Kind::Always,
            },
            path: discoveries.get(p.name).map(|path| model.render(path)),
        })
        .collect();
    Report {
        config: *config,
        complete: !finish.matches(&found, &properties),
        unique_states,
        generated_states,
        max_depth,
        elapsed,
        verdicts,
    }
}

/// Explores every reachable state of `config` and judges every property.
/// Each counterexample is then searched for again on its own, breadth
/// first, so the path shown is a shortest one (or nearly).
pub fn check(config: &Config) -> Report {
    let mut report = run(config, Search::Exhaustive);
    for verdict in &mut report.verdicts {
        if verdict.kind == Kind::Always && verdict.path.is_some() {
            let short = run(config, Search::Shortest(verdict.property));
            if let Some(path) = short.counterexample(verdict.property) {
                verdict.path = Some(path.to_vec());
            }
        }
    }
    report
}

/// Searches breadth first, on one thread, for a counterexample to one
/// property, and stops at the first (a shortest one, or nearly).
pub fn find_counterexample(config: &Config, property: &'static str) -> Report {
    run(config, Search::Shortest(property))
}
