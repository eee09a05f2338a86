//! API tokens and roles. A token is a random secret shown once; only its SHA-256 is
//! stored, so a leaked database does not leak working tokens. Each token carries one
//! role, and each role allows a fixed set of [`Permission`]s.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mailbaar_store::schema::api_tokens;
use mailbaar_store::{now, DbConnection};
use mailbaar_store::{ErrorCode, ErrorKind};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use utoipa::ToSchema;

/// Errors of token management.
#[derive(Debug, Error)]
pub enum AccessError {
    #[error("the token name must be 1 to 100 characters")]
    InvalidName,
    #[error("token {0} does not exist")]
    NotFound(i64),
    #[error("token {0} is already revoked")]
    AlreadyRevoked(i64),
    /// A stored role this version does not know: the row is refused, never read as a
    /// lesser (or greater) role.
    #[error("token {token_id} has a role this version does not know: {role:?}")]
    UnknownRole { token_id: i64, role: String },
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl ErrorCode for AccessError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("invalid_token_name", ErrorKind::Invalid),
        ("token_not_found", ErrorKind::NotFound),
        ("token_already_revoked", ErrorKind::Conflict),
        ("token_role_unknown", ErrorKind::Internal),
    ];

    fn kind(&self) -> ErrorKind {
        match self {
            AccessError::InvalidName => ErrorKind::Invalid,
            AccessError::NotFound(_) => ErrorKind::NotFound,
            AccessError::AlreadyRevoked(_) => ErrorKind::Conflict,
            AccessError::UnknownRole { .. } => ErrorKind::Internal,
            AccessError::Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AccessError::InvalidName => "invalid_token_name",
            AccessError::NotFound(_) => "token_not_found",
            AccessError::AlreadyRevoked(_) => "token_already_revoked",
            AccessError::UnknownRole { .. } => "token_role_unknown",
            AccessError::Database(e) => e.code(),
        }
    }
}

mailbaar_store::text_enum! {
    /// What a token may do. Roles are fixed bundles of these.
    #[schema(example = "marketer")]
    pub enum Role as "role" {
        /// Everything, including token management.
        Admin = "admin",
        /// Persons, queries, campaigns; no privacy operations.
        Marketer = "marketer",
        /// Persons, consent and the privacy operations (anonymize, exports, audit log).
        PrivacyOfficer = "privacy_officer",
        /// Reads only.
        Viewer = "viewer",
        /// Reports bounces and nothing else: the token a bounce-mailbox script uses
        /// (`POST /api/v1/bounces`), so it needs no admin token.
        BounceReporter = "bounce_reporter",
    }
}

/// A single capability checked by the service before it acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read persons, their transactions and other personal data.
    ReadPersons,
    /// Create and change persons and transactions.
    WritePersons,
    /// Record consent on behalf of a person.
    WriteConsent,
    /// Create, change and delete opt-in types and run their soft opt-ins.
    ManageOptInTypes,
    /// Create, list and revoke API tokens.
    ManageTokens,
    /// Save, overwrite, copy and delete saved queries.
    ManageQueries,
    /// Change organisation-wide settings.
    ManageSettings,
    /// Start a recalculation of every profile.
    RecalculateProfiles,
    /// Anonymize a person (the right to be forgotten).
    Anonymize,
    /// Read the audit log.
    ReadAuditLog,
    /// Export all personal data of a person (right of access).
    ExportPersonalData,
    /// Read campaigns, campaign steps, mail jobs and results.
    ReadCampaigns,
    /// Create and change campaigns and steps, send test mails, send and schedule mail
    /// jobs, reset steps.
    ManageCampaigns,
    /// Report bounces (DSNs, provider webhooks), which set bouncer flags.
    ReportBounces,
    /// Export the persons of a saved query (CSV).
    ExportPersons,
    /// Read the bounce reports the intake could not read, kept as received (they hold
    /// personal data of people who are not necessarily persons here).
    ReviewUnreadableReports,
}

impl Role {
    /// The role a text names, if any (a configured or stored role).
    pub fn parse(s: &str) -> Option<Role> {
        s.parse().ok()
    }

    /// The one table of who may do what.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Marketer | Role::PrivacyOfficer
                if matches!(
                    permission,
                    ReadPersons
                        | WritePersons
                        | WriteConsent
                        | ManageOptInTypes
                        | ManageQueries
                        | RecalculateProfiles
                        | ReadCampaigns
                ) =>
            {
                true
            }
            Role::PrivacyOfficer => {
                matches!(permission, Anonymize | ReadAuditLog | ExportPersonalData)
            }
            Role::Marketer => matches!(permission, ManageCampaigns | ExportPersons),
            Role::Viewer => matches!(permission, ReadPersons | ReadCampaigns),
            Role::BounceReporter => matches!(permission, ReportBounces),
        }
    }
}

/// A token as listed: never the secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 3, "name": "newsletter team", "role": "marketer",
    "created_at": "2026-11-23T09:00:00Z", "last_used_at": null, "revoked_at": null}))]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token just created, with its secret: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 3, "name": "newsletter team", "role": "marketer",
    "created_at": "2026-11-23T09:00:00Z", "last_used_at": null, "revoked_at": null,
    "token": "mb_3f1c0e8a2b7d4c6e9a1b2c3d4e5f60718293a4b5c6d7e8f9"}))]
pub struct IssuedToken {
    #[serde(flatten)]
    pub token: Token,
    /// The bearer secret. Store it now; it cannot be shown again.
    #[serde(rename = "token")]
    pub secret: String,
}

/// The identity behind a verified bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub fn may(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }

    /// How this caller is named in ledgers and logs.
    pub fn label(&self) -> String {
        format!("token:{}:{}", self.token_id, self.name)
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
struct TokenRow {
    id: i64,
    name: String,
    role: String,
    created_at: chrono::NaiveDateTime,
    last_used_at: Option<chrono::NaiveDateTime>,
    revoked_at: Option<chrono::NaiveDateTime>,
}

impl TokenRow {
    fn role(&self) -> Result<Role, AccessError> {
        Role::parse(&self.role).ok_or_else(|| AccessError::UnknownRole {
            token_id: self.id,
            role: self.role.clone(),
        })
    }
}

impl TryFrom<TokenRow> for Token {
    type Error = AccessError;

    fn try_from(r: TokenRow) -> Result<Self, AccessError> {
        Ok(Token {
            role: r.role()?,
            id: r.id,
            name: r.name,
            created_at: r.created_at.and_utc(),
            last_used_at: r.last_used_at.map(|t| t.and_utc()),
            revoked_at: r.revoked_at.map(|t| t.and_utc()),
        })
    }
}

fn find(conn: &mut DbConnection, id: i64) -> Result<TokenRow, diesel::result::Error> {
    api_tokens::table
        .find(id)
        .select(TokenRow::as_select())
        .first(conn)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token with a new random secret, audited (`token.created`, by `created_by`)
/// in the same transaction.
pub fn issue(
    conn: &mut DbConnection,
    name: &str,
    role: Role,
    created_by: &str,
) -> Result<IssuedToken, AccessError> {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("mb_{}", hex::encode(bytes));
    mailbaar_store::write_transaction(conn, |conn| {
        let issued = register(conn, name, role, &secret)?;
        let detail = format!("token {} with role {}", issued.token.id, role.as_str());
        mailbaar_audit::record(conn, created_by, "token.created", None, &detail)?;
        Ok(issued)
    })
}

/// Registers a secret chosen elsewhere (the `MAILBAAR_ADMIN_TOKEN` of a deployment);
/// registering the same secret again returns the existing token.
pub fn register(
    conn: &mut DbConnection,
    name: &str,
    role: Role,
    secret: &str,
) -> Result<IssuedToken, AccessError> {
    let name =
        mailbaar_store::clean_required_text(name, 100).map_err(|_| AccessError::InvalidName)?;
    let name = name.as_str();
    let digest = hash(secret);
    let existing = api_tokens::table
        .filter(api_tokens::secret_hash.eq(&digest))
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?;
    let row = match existing {
        Some(row) => row,
        None => {
            let id: i64 = diesel::insert_into(api_tokens::table)
                .values((
                    api_tokens::name.eq(name),
                    api_tokens::role.eq(role),
                    api_tokens::secret_hash.eq(&digest),
                    api_tokens::created_at.eq(now()),
                ))
                .returning(api_tokens::id)
                .get_result(conn)?;
            find(conn, id)?
        }
    };
    Ok(IssuedToken {
        token: row.try_into()?,
        secret: secret.to_owned(),
    })
}

/// Resolves a bearer secret to its caller; `None` for unknown or revoked tokens.
pub fn verify(conn: &mut DbConnection, secret: &str) -> Result<Option<Caller>, AccessError> {
    let row = api_tokens::table
        .filter(api_tokens::secret_hash.eq(hash(secret)))
        .filter(api_tokens::revoked_at.is_null())
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?;
    row.map(|r| {
        Ok(Caller {
            role: r.role()?,
            token_id: r.id,
            name: r.name,
        })
    })
    .transpose()
}

/// All tokens, newest first.
pub fn list(conn: &mut DbConnection) -> Result<Vec<Token>, AccessError> {
    api_tokens::table
        .order(api_tokens::id.desc())
        .select(TokenRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Token::try_from)
        .collect()
}

/// Revokes a token; it stops working at once.
pub fn revoke(conn: &mut DbConnection, id: i64) -> Result<Token, AccessError> {
    let row = api_tokens::table
        .find(id)
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(AccessError::NotFound(id))?;
    if row.revoked_at.is_some() {
        return Err(AccessError::AlreadyRevoked(id));
    }
    diesel::update(api_tokens::table.find(id))
        .set(api_tokens::revoked_at.eq(now()))
        .execute(conn)?;
    find(conn, id)?.try_into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailbaar_store::{testing::TestDatabase, Backend};

    fn lifecycle(backend: Backend) {
        let Some(db) = TestDatabase::new(backend) else {
            return;
        };
        let pool = db.pool();
        let mut conn = pool.get().unwrap();
        let issued = issue(&mut conn, "team", Role::Marketer, "cli").unwrap();
        let caller = verify(&mut conn, &issued.secret).unwrap().expect("valid");
        assert_eq!(caller.role, Role::Marketer);
        assert!(verify(&mut conn, "mb_wrong").unwrap().is_none());
        revoke(&mut conn, issued.token.id).unwrap();
        assert!(verify(&mut conn, &issued.secret).unwrap().is_none());
        assert!(matches!(
            revoke(&mut conn, issued.token.id),
            Err(AccessError::AlreadyRevoked(_))
        ));
        let again = register(&mut conn, "env", Role::Admin, "mb_fixed").unwrap();
        let same = register(&mut conn, "env", Role::Admin, "mb_fixed").unwrap();
        assert_eq!(again.token.id, same.token.id);
    }

    mailbaar_store::both_engines!(backend: lifecycle);

    #[test]
    fn viewer_reads_only() {
        assert!(Role::Viewer.allows(Permission::ReadPersons));
        assert!(!Role::Viewer.allows(Permission::WritePersons));
        assert!(!Role::Marketer.allows(Permission::ManageTokens));
        assert!(Role::Admin.allows(Permission::ManageTokens));
    }

    #[test]
    fn bounce_reporter_reports_bounces_only() {
        use Permission::*;
        assert!(Role::BounceReporter.allows(ReportBounces));
        for p in [
            ReadPersons,
            WritePersons,
            WriteConsent,
            ManageOptInTypes,
            ManageTokens,
            ManageQueries,
            ManageSettings,
            RecalculateProfiles,
            Anonymize,
            ReadAuditLog,
            ExportPersonalData,
            ReadCampaigns,
            ManageCampaigns,
            ExportPersons,
            ReviewUnreadableReports,
        ] {
            assert!(!Role::BounceReporter.allows(p), "{p:?}");
        }
        assert!(!Role::Marketer.allows(ReportBounces));
    }

    /// The role's stored name passes the roles table's CHECK on both engines.
    fn bounce_reporter_token(conn: &mut DbConnection) {
        let issued = issue(conn, "bounce mailbox", Role::BounceReporter, "cli").unwrap();
        let caller = verify(conn, &issued.secret).unwrap().unwrap();
        assert_eq!(caller.role, Role::BounceReporter);
    }

    mailbaar_store::both_engines!(bounce_reporter_token);
}
