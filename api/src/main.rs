//! The `mailbaar` binary: `serve` (default), `migrate`, `token create`,
//! `profiles recalculate`, `demo-data`.

use clap::{Parser, Subcommand};
use mailbaar_access::Role;
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
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILBAAR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let config = Config::from_env();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => actix_web::rt::System::new().block_on(async move {
            let app = Application::build(config)?;
            tracing::info!(port = app.port(), "mailbaar listening");
            app.run_until_stopped().await?;
            Ok(())
        }),
        Command::Migrate => {
            open_database(&config)?;
            println!("migrations are up to date");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create { role, name },
        } => {
            let pool = open_database(&config)?;
            let issued = mailbaar_access::issue(&mut *pool.get()?, &name, role)?;
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
                "{} persons, {} consent records, {} transactions, {} contact moments, {} saved queries in {:.1} s ({:.0} rows/s)",
                summary.persons,
                summary.consent_records,
                summary.transactions,
                summary.contact_moments,
                summary.saved_queries,
                summary.elapsed.as_secs_f64(),
                summary.rows_per_second()
            );
            Ok(())
        }
        Command::Profiles {
            command: ProfilesCommand::Recalculate,
        } => {
            let pool = open_database(&config)?;
            let job = mailbaar_jobs::create(&mut *pool.get()?, mailbaar_profiles::JOB_KIND, "cli")?;
            let done = mailbaar_profiles::run_job(&pool, job.id)?;
            println!("job {}: {} profiles calculated", job.id, done.profiles);
            Ok(())
        }
    }
}
