//! `waiting-room-admin watch`: a live view of one event for the operator's
//! second screen during a sale. It reads the event's report (as `show` does)
//! every second and redraws in place: the state, capacity, active, free,
//! waiting, admitted, exits by reason, admissions per second as a sparkline,
//! and the estimated wait at the back of the line.

use std::collections::VecDeque;
use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};
use waiting_room::domain::Timestamp;
use waiting_room::service::admin::EventReport;

/// Samples kept: a minute at one a second.
const WINDOW: usize = 60;

/// What the view knows: the latest report and the admissions seen over the
/// last minute.
#[derive(Debug, Default)]
pub struct WatchState {
    event: String,
    report: Option<EventReport>,
    /// (when, admitted so far), oldest first.
    samples: VecDeque<(Timestamp, u64)>,
    /// Admissions per second between consecutive samples, for the sparkline.
    rates: VecDeque<u64>,
    /// The last read's failure, shown until a read succeeds.
    error: Option<String>,
}

impl WatchState {
    pub fn new(event: &str) -> Self {
        Self {
            event: event.to_owned(),
            ..Self::default()
        }
    }

    pub fn observe(&mut self, report: EventReport, at: Timestamp) {
        if let Some(&(then, admitted)) = self.samples.back() {
            let seconds = at.since(then).as_secs_f64();
            if seconds > 0.0 {
                let per_second = report.admitted.saturating_sub(admitted) as f64 / seconds;
                self.rates.push_back(per_second.round() as u64);
            }
        }
        self.samples.push_back((at, report.admitted));
        while self.samples.len() > WINDOW {
            self.samples.pop_front();
        }
        while self.rates.len() > WINDOW {
            self.rates.pop_front();
        }
        self.report = Some(report);
        self.error = None;
    }

    pub fn failed(&mut self, error: String) {
        self.error = Some(error);
    }

    /// Admissions per second over the window.
    pub fn admission_rate(&self) -> Option<f64> {
        let (&(first_at, first), &(last_at, last)) = (self.samples.front()?, self.samples.back()?);
        let seconds = last_at.since(first_at).as_secs_f64();
        (seconds > 0.0).then(|| last.saturating_sub(first) as f64 / seconds)
    }

    /// How long the last one in line would wait at the current rate.
    pub fn estimated_wait(&self) -> Option<Duration> {
        let waiting = self.report.as_ref()?.waiting;
        if waiting == 0 {
            return Some(Duration::ZERO);
        }
        let rate = self.admission_rate().filter(|r| *r > 0.0)?;
        Some(Duration::from_secs_f64(waiting as f64 / rate))
    }
}

fn duration_text(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
    }
}

fn state_style(state: &str) -> Style {
    let color = match state {
        "OPEN" => Color::Green,
        "PAUSED" => Color::Yellow,
        "SCHEDULED" => Color::Cyan,
        _ => Color::Red,
    };
    Style::default().fg(color).add_modifier(Modifier::BOLD)
}

/// Draws the whole view into `frame`.
pub fn render(frame: &mut Frame, state: &WatchState) {
    let [header, figures, exits, spark, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(4),
        Constraint::Length(3),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let title = match &state.report {
        Some(report) => {
            let mut spans = vec![
                Span::raw(format!(" {} ", state.event)),
                Span::styled(report.state, state_style(report.state)),
            ];
            if let (Some(opens_at), "SCHEDULED") = (&report.opens_at, report.state) {
                spans.push(Span::raw(format!("  opens {opens_at}")));
            }
            Line::from(spans)
        }
        None => Line::from(format!(" {} (reading…)", state.event)),
    };
    frame.render_widget(
        Paragraph::new(title).block(Block::default().borders(Borders::ALL).title("event")),
        header,
    );

    let rate = state
        .admission_rate()
        .map_or("—".to_owned(), |r| format!("{r:.1}/s"));
    let wait = state
        .estimated_wait()
        .map_or("— (nobody admitted lately)".to_owned(), duration_text);
    let (figure_lines, exit_line) = match &state.report {
        Some(r) => (
            vec![
                Line::from(format!(
                    " capacity {}   active {}   free {}   waiting {}   admitted {}",
                    r.capacity, r.active, r.free, r.waiting, r.admitted
                )),
                Line::from(format!(" admissions {rate}   est. wait at the back {wait}")),
            ],
            Line::from(format!(
                " left {} (while waiting {})   expired {}   abandoned {}   completed {}   failed {}",
                r.left, r.left_while_waiting, r.expired, r.abandoned, r.completed, r.failed
            )),
        ),
        None => (Vec::new(), Line::default()),
    };
    frame.render_widget(
        Paragraph::new(figure_lines).block(Block::default().borders(Borders::ALL).title("line")),
        figures,
    );
    frame.render_widget(
        Paragraph::new(exit_line).block(Block::default().borders(Borders::ALL).title("exits")),
        exits,
    );
    let rates: Vec<u64> = state.rates.iter().copied().collect();
    frame.render_widget(
        Sparkline::default()
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title("admissions per second, last minute"),
            )
            .data(&rates)
            .style(Style::default().fg(Color::Cyan)),
        spark,
    );
    let footer_text = match &state.error {
        Some(error) => Line::styled(
            format!(" last read failed: {error}"),
            Style::default().fg(Color::Red),
        ),
        None => Line::from(" q or Esc to quit; refreshes every second"),
    };
    frame.render_widget(Paragraph::new(footer_text), footer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn report(state: &'static str, admitted: u64, waiting: u64) -> EventReport {
        EventReport {
            event_id: "E1".into(),
            state,
            opens_at: (state == "SCHEDULED").then(|| "2026-12-24T10:00:00.000Z".into()),
            closes_at: None,
            origin_url: None,
            draw_seed: None,
            admits_from: None,
            stay_seconds: None,
            max_stay_seconds: None,
            signed_joins: false,
            puzzle_difficulty: 0,
            abandon_after_seconds: None,
            capacity: 500,
            capacity_source: "stored",
            active: 480,
            free: 20,
            waiting,
            admitted,
            left: 7,
            left_while_waiting: 3,
            expired: 2,
            abandoned: 1,
            completed: 40,
            failed: 4,
            backlog_armed: true,
        }
    }

    fn screen(state: &WatchState) -> String {
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal.draw(|frame| render(frame, state)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_view_shows_the_state_the_figures_the_rate_and_the_wait() {
        let mut state = WatchState::new("E1");
        let at = |s: u64| Timestamp::from_millis(s * 1000);
        state.observe(report("OPEN", 100, 1200), at(0));
        state.observe(report("OPEN", 110, 1200), at(1));
        state.observe(report("PAUSED", 120, 1200), at(2));
        let shown = screen(&state);
        for expected in [
            "E1 PAUSED",
            "capacity 500   active 480   free 20   waiting 1200   admitted 120",
            "admissions 10.0/s   est. wait at the back 2m 0s",
            "left 7 (while waiting 3)   expired 2   abandoned 1   completed 40   failed 4",
            "admissions per second, last minute",
        ] {
            assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
        }
        let bars = shown.matches('█').count();
        assert!(bars > 0, "the sparkline shows the rate\n{shown}");
    }

    #[test]
    fn a_scheduled_event_shows_when_it_opens() {
        let mut state = WatchState::new("E3");
        state.observe(report("SCHEDULED", 0, 0), Timestamp::from_millis(0));
        let shown = screen(&state);
        assert!(
            shown.contains("E3 SCHEDULED  opens 2026-12-24T10:00:00.000Z"),
            "{shown}"
        );
        state.observe(report("OPEN", 0, 0), Timestamp::from_millis(1000));
        assert!(!screen(&state).contains("opens"));
    }

    #[test]
    fn with_nobody_admitted_the_wait_is_unknown_and_a_failed_read_is_shown() {
        let mut state = WatchState::new("E2");
        let at = |s: u64| Timestamp::from_millis(s * 1000);
        state.observe(report("OPEN", 5, 10), at(0));
        state.observe(report("OPEN", 5, 10), at(1));
        assert_eq!(state.estimated_wait(), None);
        state.failed("dependency unavailable".into());
        let shown = screen(&state);
        assert!(shown.contains("— (nobody admitted lately)"), "{shown}");
        assert!(
            shown.contains("last read failed: dependency unavailable"),
            "{shown}"
        );
        state.observe(report("OPEN", 5, 0), at(2));
        assert_eq!(state.estimated_wait(), Some(Duration::ZERO), "nobody waits");
        assert!(!screen(&state).contains("last read failed"));
    }
}
