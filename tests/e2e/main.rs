//! The end-to-end tests, one module per area, in one test binary. Run one area with a
//! filter on its module path: `cargo test -p mailbaar-e2e -- delivery::`.

mod bounces;
mod browser;
mod card;
mod client;
mod consent;
mod delivery;
mod errors;
mod faults;
mod gdpr;
mod imports;
mod mailing;
mod paging;
mod persons;
mod providers;
mod queries;
mod recipient;
mod smtp_matrix;
