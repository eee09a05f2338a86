//! The `mailbaar` binary: `serve` (default), `worker`, `migrate`, `token create`,
//! `profiles recalculate`, `demo-data`, `import`, `export`.

use clap::{Parser, Subcommand};
use mailbaar_access::Role;
use mailbaar_api::config::Environment;
use mailbaar_api::{open_database, Application, Config};

#[derive(Parser)]
#[command(
    name = "mailbaar",
    version,
    about = "Headless CRM and e-mail marketing with a GDPR consent ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    environment: Environment,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default); it runs background tasks too unless
    /// MAILBAAR_RUN_TASKS=false.
    Serve,
    /// Run background tasks (recalculations, retention runs, schedules) and serve no HTTP;
    /// add as many as the database allows. SIGTERM or SIGINT stops it after the tasks it
    /// holds have finished.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Fill the database with realistic, reproducible demo data (bulk, with progress).
    DemoData {
        /// How many persons to add.
        #[arg(long, default_value_t = 1000)]
        persons: u64,
        /// The same seed and size make the same data.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
    },
    /// Work on profiles.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// Import persons from a CSV file, with a progress bar (as `POST /api/v1/imports`).
    Import {
        /// The CSV file (UTF-8, a header row).
        file: std::path::PathBuf,
        /// The mapping as JSON (the `ImportMapping` schema of the API).
        #[arg(long)]
        mapping: std::path::PathBuf,
    },
    /// Export the persons of a saved query as CSV to standard output.
    Export {
        /// The saved query's id.
        query_id: i64,
        /// Comma-separated columns (as the API's `columns`).
        #[arg(long)]
        columns: Option<String>,
    },
}

#[derive(Subcommand)]
enum ProfilesCommand {
    /// Recalculate every profile now (as a job, like the API), and print the outcome.
    Recalculate,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret once.
    Create {
        /// admin, marketer, privacy_officer or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Who or what uses it.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "one of admin, marketer, privacy_officer, viewer".to_owned())
}

/// Runs the command; a failure is printed as a sentence (never a debug dump) and exits 1.
/// A bad setting has already exited 2 naming its variable, before anything ran.
fn main() {
    Environment::forget_empty_variables();
    let filter = match std::env::var("MAILBAAR_LOG") {
        Ok(value) => tracing_subscriber::EnvFilter::try_new(&value).unwrap_or_else(|e| {
            eprintln!("error: invalid value '{value}' for MAILBAAR_LOG: {e}");
            std::process::exit(2)
        }),
        Err(_) => "info".into(),
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();
    if let Err(e) = run() {
        eprintln!("error: {e}");
        let mut source = e.source();
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let config = Config::from(cli.environment);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => actix_web::rt::System::new().block_on(async move {
            let app = Application::build(config)?;
            tracing::info!(port = app.port(), "mailbaar listening");
            app.run_until_stopped().await?;
            Ok(())
        }),
        Command::Worker => {
            let pool = open_database(&config)?;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
            signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
            let delivery = mailbaar_api::work::delivery(&pool, &config)?;
            let runners = mailbaar_api::work::start_runners(&pool, &config.tasks, delivery)?;
            tracing::info!(runners = runners.len(), "mailbaar worker running tasks");
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            tracing::info!("stopping: the running tasks finish first");
            drop(runners);
            Ok(())
        }
        Command::Migrate => {
            open_database(&config)?;
            println!("migrations are up to date");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create { role, name },
        } => {
            let pool = open_database(&config)?;
            let issued = mailbaar_access::issue(&mut *pool.get()?, &name, role, "cli")?;
            println!("{}", issued.secret);
            Ok(())
        }
        Command::DemoData { persons, seed } => {
            let pool = open_database(&config)?;
            let bar = indicatif::ProgressBar::new(persons).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} persons, {per_sec}, {eta} left",
                )?,
            );
            let options = mailbaar_demo::DemoOptions {
                persons,
                seed,
                now: mailbaar_store::now(),
            };
            let summary = mailbaar_demo::fill(&mut *pool.get()?, options, &mut |done| {
                bar.set_position(done)
            })?;
            bar.finish_and_clear();
            println!(
                "{} persons, {} consent records, {} transactions, {} contact moments, {} saved queries, {} newsletter steps with their sent mail jobs in {:.1} s ({:.0} rows/s)",
                summary.persons,
                summary.consent_records,
                summary.transactions,
                summary.contact_moments,
                summary.saved_queries,
                summary.campaign_steps,
                summary.elapsed.as_secs_f64(),
                summary.rows_per_second()
            );
            Ok(())
        }
        Command::Import { file, mapping } => {
            let pool = open_database(&config)?;
            let mapping: mailbaar_imports::ImportMapping =
                serde_json::from_str(&std::fs::read_to_string(&mapping)?)?;
            let mut conn = pool.get()?;
            let import = mailbaar_imports::create_import(&mut conn, &file, &mapping, "cli", false)?;
            let bar = indicatif::ProgressBar::new(std::fs::metadata(&file)?.len()).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes}, {bytes_per_sec}, {eta} left",
                )?,
            );
            let counts =
                mailbaar_imports::run_import(&mut conn, import.id, "cli", &mut |done, _| {
                    bar.set_position(done);
                    Ok(())
                })?;
            bar.finish_and_clear();
            println!(
                "import {}: {} rows: {} created, {} updated, {} unchanged, {} skipped, {} failed",
                import.id,
                counts.rows_read,
                counts.created,
                counts.updated,
                counts.unchanged,
                counts.skipped,
                counts.failed
            );
            if counts.failed > 0 {
                let errors = mailbaar_imports::get_import(&mut conn, import.id)?;
                for e in errors.errors.iter().take(20) {
                    eprintln!("row {}, {}: {}", e.row, e.column, e.reason);
                }
            }
            Ok(())
        }
        Command::Export { query_id, columns } => {
            let pool = open_database(&config)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = mailbaar_imports::export_rows(
                &pool,
                query_id,
                &mailbaar_imports::ExportColumns { columns },
                "cli",
                &mut out,
            )?;
            std::io::Write::flush(&mut out)?;
            eprintln!("{n} persons exported");
            Ok(())
        }
        Command::Profiles {
            command: ProfilesCommand::Recalculate,
        } => {
            let pool = open_database(&config)?;
            let task = mailbaar_tasks::enqueue(
                &mut *pool.get()?,
                &mailbaar_profiles::recalculation_task("cli"),
            )?;
            let mut registry = mailbaar_tasks::Registry::new();
            registry.register(
                mailbaar_profiles::RECALCULATE,
                mailbaar_profiles::recalculation_work,
            );
            let runner = mailbaar_tasks::Runner::new(
                pool.clone(),
                std::sync::Arc::new(registry),
                mailbaar_tasks::RunnerOptions::default(),
            );
            // Runs queued recalculations (this one is the only one: the kind is unique).
            let done = loop {
                runner.run_next()?;
                let t = mailbaar_tasks::get(&mut *pool.get()?, task.id)?;
                if t.state.is_final() {
                    break t;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            };
            println!(
                "task {}: {}: {}",
                done.id,
                done.state.as_str(),
                done.message
            );
            if done.state != mailbaar_tasks::TaskState::Succeeded {
                return Err(done.message.into());
            }
            Ok(())
        }
    }
}
