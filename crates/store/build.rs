//! The store's build script, which every crate with database tests shares
//! (`build = "../store/build.rs"` in its `Cargo.toml`).
//!
//! - For the store itself: the embedded migrations live outside the crate, so it is rebuilt
//!   when any of them changes.
//! - For every crate that uses it: whether PostgreSQL tests run is decided here, at build
//!   time, because libtest can only mark a test ignored when it is compiled. The script
//!   sets the `mailbaar_no_postgres` cfg when `MAILBAAR_TEST_POSTGRES_URL` is unset (or
//!   empty) and `CI` is not set; `mailbaar_store::both_engines!` marks the PostgreSQL case
//!   of each test `#[ignore]` under it. With `CI` set the cfg is never set, so a missing or
//!   unreachable server fails those tests. Changing either variable rebuilds.

fn main() {
    if std::env::var("CARGO_PKG_NAME").as_deref() == Ok("mailbaar-store") {
        println!("cargo::rerun-if-changed=../../migrations");
    }
    println!("cargo::rerun-if-env-changed=MAILBAAR_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(mailbaar_no_postgres)");
    let postgres = std::env::var("MAILBAAR_TEST_POSTGRES_URL").is_ok_and(|u| !u.trim().is_empty());
    let ci = std::env::var_os("CI").is_some();
    if !postgres && !ci {
        println!("cargo::rustc-cfg=mailbaar_no_postgres");
    }
}
