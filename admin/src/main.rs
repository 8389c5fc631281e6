//! `waiting-room-admin`: the operator's tool. Provision the table and queues
//! against any endpoint, configure (capacity, scheduled opening, closing
//! time, origin) or set an event's capacity, open, pause, resume or close it,
//! evict a session, list events, show one's state and counters, or watch it
//! live.

mod watch;

use std::process::ExitCode;

use base64::Engine;
use clap::{Parser, Subcommand};
use waiting_room::adapters::aws::{dynamodb_client, sdk_config_for, sns_client, sqs_client};
use waiting_room::adapters::dynamodb::DynamoStore;
use waiting_room::adapters::provision::{Clients, ResourceNames, provision};
use waiting_room::domain::signed_join::{JoinKeys, LONGEST_SIGNATURE};
use waiting_room::domain::token::AdmissionSigner;
use waiting_room::domain::{Clock, Control, EventId, SessionId, SystemClock, UserId};
use waiting_room::ports::EventStore;
use waiting_room::service::admin::{AdminService, Configuration, MAX_CAPACITY};
use waiting_room::setup::config::{self, LifecycleSettings, LineSettings};
use waiting_room::setup::wiring;

#[derive(Parser)]
#[command(version, about = "Operate a waiting room deployment")]
struct Cli {
    /// DynamoDB table of the deployment.
    #[arg(long, env = "TABLE_NAME", default_value = "waiting-room")]
    table: String,
    /// Endpoint to talk to instead of AWS (LocalStack, moto).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the table (with its index, stream and TTL) and the join queue
    /// with its dead-letter queue. Existing resources are left as they are.
    Provision {
        /// Queue names start with this: `<prefix>-join.fifo`.
        #[arg(long, default_value = "waiting-room")]
        queue_prefix: String,
    },
    /// Set how many users of an event may be active at once.
    SetCapacity {
        #[arg(long)]
        event: String,
        #[arg(long)]
        capacity: u32,
    },
    /// Store an event's configuration (only what is given changes). An
    /// opening time schedules the event: joins before it go into a
    /// pre-queue that is let in in a random draw's order at the opening.
    Configure {
        #[arg(long)]
        event: String,
        #[command(flatten)]
        flags: ConfigureFlags,
    },
    /// Open a scheduled event now (its pre-queue is let in in draw order).
    Open {
        #[arg(long)]
        event: String,
    },
    /// Print an event's state and counters as JSON.
    Show {
        #[arg(long)]
        event: String,
    },
    /// List the events the deployment knows (one id per line).
    Events,
    /// A live view of one event, refreshing in place every second (q or
    /// Esc to quit): state, capacity, active, waiting, admitted, exits,
    /// admissions per second and the estimated wait at the back.
    Watch {
        #[arg(long)]
        event: String,
    },
    /// Hold admissions: joins and polls go on, freed slots wait for `resume`.
    Pause {
        #[arg(long)]
        event: String,
    },
    /// Admit again, in line order, at once.
    Resume {
        #[arg(long)]
        event: String,
    },
    /// Refuse new joins (`event_closed`); everyone in line keeps their
    /// place and is admitted as slots free. Final.
    Close {
        #[arg(long)]
        event: String,
    },
    /// End one session now (waiting or active): `LEFT` with reason
    /// `evicted`; its place or slot is given back once.
    Evict {
        #[arg(long)]
        session: String,
        /// Also keep the user from joining this event again.
        #[arg(long)]
        block: bool,
    },
    /// Make a new Ed25519 key for admission tokens. Prints the secret setting
    /// (ADMISSION_SIGNING_KEY, for status and the publisher) and the public
    /// one (ADMISSION_PUBLIC_KEYS, for the authorizer and the JWKS). Keep the
    /// previous public key in ADMISSION_PUBLIC_KEYS until its tokens expire.
    NewSigningKey {
        /// The key id tokens name in their header.
        #[arg(long)]
        kid: String,
    },
    /// Make a new key for signed joins. Prints JOIN_SIGNING_KEYS (for the
    /// join function; put it first, before any key still in use) and the
    /// key alone, for the ticketing site.
    NewJoinKey,
    /// Sign a join as the ticketing site does, with the first key of
    /// JOIN_SIGNING_KEYS; prints the link's query and the API's signature.
    SignJoin {
        #[arg(long)]
        event: String,
        #[arg(long)]
        user: String,
        /// How long the signature stays good, in seconds (at most a day).
        #[arg(long, default_value_t = 600)]
        valid_for: u64,
        #[arg(long, env = "JOIN_SIGNING_KEYS", hide_env_values = true)]
        keys: String,
    },
}

/// What `configure` may set; "none" removes an optional setting (back to
/// no closing time, no origin, the deployment's stay or limit).
#[derive(clap::Args)]
struct ConfigureFlags {
    #[arg(long)]
    capacity: Option<u32>,
    /// When the event opens, RFC 3339 in UTC (2026-12-24T10:00:00Z).
    #[arg(long)]
    opens_at: Option<String>,
    /// When it stops taking joins by itself.
    #[arg(long)]
    closes_at: Option<String>,
    /// Where admitted fans are sent.
    #[arg(long)]
    origin_url: Option<String>,
    /// How long an admitted fan may stay, in seconds.
    #[arg(long)]
    stay_seconds: Option<String>,
    /// The longest a stay can be extended to, in seconds.
    #[arg(long)]
    max_stay_seconds: Option<String>,
    /// A waiting fan silent this long is abandoned (0: never).
    #[arg(long)]
    abandon_after_seconds: Option<String>,
    /// Take joins only with the ticketing site's signature (true/false).
    #[arg(long)]
    signed_joins: Option<bool>,
    /// Every join must solve a puzzle this hard, in bits (0: off); raise
    /// it during a bot wave.
    #[arg(long)]
    puzzle_difficulty: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<String, String> {
    if let Command::NewSigningKey { kid } = &cli.command {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
        let signer = AdmissionSigner::generate(kid, seed).map_err(|e| e.to_string())?;
        return Ok(serde_json::json!({
            "ADMISSION_SIGNING_KEY": signer.secret_setting(),
            "ADMISSION_PUBLIC_KEYS": signer.public_key().setting(),
        })
        .to_string());
    }
    match &cli.command {
        Command::NewJoinKey => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| e.to_string())?;
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
            return Ok(serde_json::json!({"JOIN_SIGNING_KEYS": key}).to_string());
        }
        Command::SignJoin {
            event,
            user,
            valid_for,
            keys,
        } => return sign_join(event, user, *valid_for, keys),
        _ => {}
    }
    let sdk = sdk_config_for(cli.endpoint_url.as_deref()).await;
    let dynamodb = dynamodb_client(&sdk);
    match cli.command {
        Command::Provision { queue_prefix } => {
            let names = ResourceNames {
                table: cli.table,
                queue_prefix,
            };
            let (sqs, sns) = (sqs_client(&sdk), sns_client(&sdk));
            let clients = Clients {
                dynamodb: &dynamodb,
                sqs: &sqs,
                sns: &sns,
            };
            let provisioned = provision(&clients, &names)
                .await
                .map_err(|e| e.to_string())?;
            Ok(serde_json::json!({
                "TABLE_NAME": provisioned.table,
                "JOIN_QUEUE_URL": provisioned.join_queue_url,
                "JOIN_DLQ_URL": provisioned.join_dead_letter_queue_url,
                "CHECKOUT_QUEUE_URL": provisioned.checkout_queue_url,
                "CHECKOUT_DLQ_URL": provisioned.checkout_dead_letter_queue_url,
                "EVENTS_TOPIC_ARN": provisioned.events_topic_arn,
                "ADMISSIONS_TOPIC_ARN": provisioned.admissions_topic_arn,
                "STREAM_DLQ_URL": provisioned.stream_dead_letter_queue_url,
            })
            .to_string())
        }
        Command::SetCapacity { event, capacity } => {
            let event = EventId::parse(&event).map_err(|e| e.to_string())?;
            let store = DynamoStore::new(dynamodb, cli.table);
            store
                .set_capacity(&event, capacity)
                .await
                .map_err(|e| e.to_string())?;
            Ok(serde_json::json!({"eventId": event.as_str(), "capacity": capacity}).to_string())
        }
        Command::NewSigningKey { .. } | Command::NewJoinKey | Command::SignJoin { .. } => {
            Err("handled above".into())
        }
        Command::Events => {
            let store = DynamoStore::new(dynamodb, cli.table);
            let mut events = store.events().await.map_err(|e| e.to_string())?;
            events.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            Ok(events
                .iter()
                .map(EventId::as_str)
                .collect::<Vec<_>>()
                .join("\n"))
        }
        Command::Configure { event, flags } => {
            let event = EventId::parse(&event).map_err(|e| e.to_string())?;
            let config = configuration(flags)?;
            let report = admin(DynamoStore::new(dynamodb, cli.table))?
                .configure(&event, &config)
                .await
                .map_err(|e| e.to_string())?;
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
        }
        Command::Open { event } => {
            let admin = admin(DynamoStore::new(dynamodb, cli.table))?;
            control(&admin, &event, Control::Open).await
        }
        Command::Pause { event } => {
            let admin = admin(DynamoStore::new(dynamodb, cli.table))?;
            control(&admin, &event, Control::Pause).await
        }
        Command::Resume { event } => {
            let admin = admin(DynamoStore::new(dynamodb, cli.table))?;
            control(&admin, &event, Control::Resume).await
        }
        Command::Close { event } => {
            let admin = admin(DynamoStore::new(dynamodb, cli.table))?;
            control(&admin, &event, Control::Close).await
        }
        Command::Evict { session, block } => {
            let id = SessionId::parse(&session).map_err(|e| e.to_string())?;
            let outcome = admin(DynamoStore::new(dynamodb, cli.table))?
                .evict(&id, block)
                .await
                .map_err(|e| e.to_string())?;
            serde_json::to_string(&outcome).map_err(|e| e.to_string())
        }
        Command::Watch { event } => {
            watch(&admin(DynamoStore::new(dynamodb, cli.table))?, &event).await
        }
        Command::Show { event } => {
            let event = EventId::parse(&event).map_err(|e| e.to_string())?;
            let report = admin(DynamoStore::new(dynamodb, cli.table))?
                .report(&event)
                .await
                .map_err(|e| e.to_string())?;
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
        }
    }
}

/// The operators' service on `store`, as the admin API runs it; line and
/// lifecycle settings from the environment, as the functions read them.
fn admin(store: DynamoStore) -> Result<AdminService<DynamoStore>, String> {
    let env = config::process_env();
    let line = LineSettings::from_env(&env).map_err(|e| e.to_string())?;
    let lifecycle = LifecycleSettings::from_env(&env).map_err(|e| e.to_string())?;
    Ok(wiring::admin_service_on(store, &line, &lifecycle))
}

/// The configuration `configure`'s flags ask for, checked as the admin API
/// checks it.
fn configuration(flags: ConfigureFlags) -> Result<Configuration, String> {
    if let Some(capacity) = flags.capacity.filter(|c| *c > MAX_CAPACITY) {
        return Err(format!("capacity {capacity} is above {MAX_CAPACITY}"));
    }
    let config = Configuration {
        capacity: flags.capacity,
        opens_at: flags
            .opens_at
            .map(|t| Configuration::parse_time("opensAt", &t))
            .transpose()?,
        closes_at: removable(flags.closes_at, |t| {
            Configuration::parse_time("closesAt", t)
        })?,
        origin_url: removable(flags.origin_url, Configuration::parse_origin_url)?,
        stay: removable(flags.stay_seconds, |v| {
            whole(v).and_then(|n| Configuration::parse_stay("staySeconds", n))
        })?,
        max_stay: removable(flags.max_stay_seconds, |v| {
            whole(v).and_then(|n| Configuration::parse_stay("maxStaySeconds", n))
        })?,
        abandon_after: removable(flags.abandon_after_seconds, |v| {
            whole(v).and_then(Configuration::parse_abandon)
        })?,
        signed_joins: flags.signed_joins,
        puzzle_difficulty: flags
            .puzzle_difficulty
            .map(Configuration::parse_puzzle_difficulty)
            .transpose()?,
    };
    if config == Configuration::default() {
        return Err("nothing to configure: give at least one setting (see --help)".into());
    }
    Ok(config)
}

/// A whole number of seconds.
fn whole(value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number of seconds"))
}

/// A flag whose value "none" removes the setting.
fn removable<T>(
    value: Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Option<T>>, String> {
    value
        .map(|v| match v.as_str() {
            "none" => Ok(None),
            given => parse(given).map(Some),
        })
        .transpose()
}

/// Open, pause, resume or close `event`; prints what it did as JSON.
async fn control(
    admin: &AdminService<DynamoStore>,
    event: &str,
    verb: Control,
) -> Result<String, String> {
    let event = EventId::parse(event).map_err(|e| e.to_string())?;
    let outcome = admin
        .control(&event, verb)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::to_string(&outcome).map_err(|e| e.to_string())
}

/// The live view: reads the event's report every second and redraws until
/// q, Esc or Ctrl-C. The terminal is restored however it ends.
async fn watch(admin: &AdminService<DynamoStore>, event: &str) -> Result<String, String> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};

    let event = EventId::parse(event).map_err(|e| e.to_string())?;
    let mut state = watch::WatchState::new(event.as_str());
    let mut terminal = ratatui::try_init().map_err(|e| e.to_string())?;
    let outcome = loop {
        match admin.report(&event).await {
            Ok(report) => state.observe(report, SystemClock.now()),
            Err(err) => state.failed(err.to_string()),
        }
        if let Err(err) = terminal.draw(|frame| watch::render(frame, &state)) {
            break Err(err.to_string());
        }
        // Wait out the second, answering keys at once.
        let next = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut quit = false;
        while let Some(left) = next.checked_duration_since(std::time::Instant::now()) {
            match event::poll(left) {
                Ok(true) => {
                    if let Ok(Event::Key(key)) = event::read() {
                        let ctrl_c = key.code == KeyCode::Char('c')
                            && key.modifiers.contains(KeyModifiers::CONTROL);
                        quit = ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc);
                    }
                }
                Ok(false) => break,
                Err(_) => {
                    quit = true;
                    break;
                }
            }
            if quit {
                break;
            }
        }
        if quit {
            break Ok(String::new());
        }
    };
    ratatui::restore();
    outcome
}

/// A signed join for `user` at `event`, as a ticketing site makes it.
fn sign_join(event: &str, user: &str, valid_for: u64, keys: &str) -> Result<String, String> {
    let event = EventId::parse(event).map_err(|e| e.to_string())?;
    let user = UserId::parse(user).map_err(|e| e.to_string())?;
    let keys = JoinKeys::parse(keys)?;
    let exp = SystemClock.now().as_secs() + valid_for.min(LONGEST_SIGNATURE.as_secs());
    let signed = keys
        .sign(&event, &user, exp)
        .ok_or("JOIN_SIGNING_KEYS names no key")?;
    Ok(serde_json::json!({
        // `+` and `@` in a user id are encoded: `+` would read as a space.
        "query": format!(
            "userId={}&exp={exp}&sig={}",
            form_urlencoded::byte_serialize(user.as_str().as_bytes()).collect::<String>(),
            signed.hmac
        ),
        "signature": {"exp": exp, "hmac": signed.hmac},
    })
    .to_string())
}
