//! The rows of `identity_applications` and `identity_documents`, and the sealing of the
//! personal data they hold. Personal data only ever reaches the database sealed with the
//! keyring, bound to its row: the representative's name and ID number and the contact e-mail
//! and phone as one sealed JSON value (associated data: the application id), each document's
//! name and content, and the commitment salt.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use trellis_servicekit::{Db, Keyring, Problem};

/// The columns [`ApplicationRow::from_row`] reads, for `concat!` into queries.
macro_rules! application_columns {
    () => {
        "id, status, legal_name, credit_code, org_public_key, sealed_pii, token_sha256, \
         created_ms, updated_ms, decided_ms, decided_by, rejection_reason, commitment, \
         attestation_tx, proposal_tx, proposal_id, chain_error"
    };
}
pub(crate) use application_columns;

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for an operator's real-name review.
    Pending,
    /// Approved; the attestation and the admission proposal are queued for the chain.
    Approved,
    /// The attestation is on the beacon; the admission proposal is queued.
    Attested,
    /// The admission proposal is open on the beacon; members vote on it.
    Proposed,
    /// Refused by the reviewer, with a reason.
    Rejected,
    /// The beacon refused the attestation or the proposal (see `chain_error`).
    ChainFailed,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Approved,
        Status::Attested,
        Status::Proposed,
        Status::Rejected,
        Status::ChainFailed,
    ];

    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Attested => "attested",
            Status::Proposed => "proposed",
            Status::Rejected => "rejected",
            Status::ChainFailed => "chain_failed",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// The personal data of an application, sealed as one value. `Debug` is redacted.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PersonalData {
    pub(crate) representative_name: String,
    pub(crate) representative_id_number: String,
    pub(crate) email: String,
    pub(crate) phone: String,
}

impl std::fmt::Debug for PersonalData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonalData(***)")
    }
}

/// Associated data of an application's sealed personal data: its id.
pub(crate) fn pii_aad(application_id: &str) -> Vec<u8> {
    application_id.as_bytes().to_vec()
}

/// Associated data of an application's sealed commitment salt.
pub(crate) fn salt_aad(application_id: &str) -> Vec<u8> {
    format!("{application_id}/salt").into_bytes()
}

/// Associated data of a document's sealed name or content (`part` is `name` or `content`).
pub(crate) fn document_aad(application_id: &str, document_id: &str, part: &str) -> Vec<u8> {
    format!("{application_id}/documents/{document_id}/{part}").into_bytes()
}

impl PersonalData {
    pub(crate) fn seal(&self, keyring: &Keyring, application_id: &str) -> Result<Vec<u8>, Problem> {
        let json = serde_json::to_vec(self).map_err(Problem::internal)?;
        keyring
            .seal(&json, &pii_aad(application_id))
            .map_err(Problem::internal)
    }

    pub(crate) fn open(
        keyring: &Keyring,
        application_id: &str,
        sealed: &[u8],
    ) -> Result<PersonalData, Problem> {
        let json = keyring
            .open(sealed, &pii_aad(application_id))
            .map_err(Problem::internal)?;
        // serde_json's error names a position, never the content.
        serde_json::from_slice(&json).map_err(Problem::internal)
    }
}

/// One row of `identity_applications` (sealed columns still sealed).
#[derive(Clone)]
pub(crate) struct ApplicationRow {
    pub(crate) id: String,
    pub(crate) status: Status,
    pub(crate) legal_name: String,
    pub(crate) credit_code: String,
    pub(crate) org_public_key: String,
    pub(crate) sealed_pii: Vec<u8>,
    pub(crate) token_sha256: String,
    pub(crate) created_ms: i64,
    pub(crate) updated_ms: i64,
    pub(crate) decided_ms: Option<i64>,
    pub(crate) decided_by: Option<String>,
    pub(crate) rejection_reason: Option<String>,
    pub(crate) commitment: Option<String>,
    pub(crate) attestation_tx: Option<String>,
    pub(crate) proposal_tx: Option<String>,
    pub(crate) proposal_id: Option<i64>,
    pub(crate) chain_error: Option<String>,
}

impl ApplicationRow {
    pub(crate) fn from_row(row: &AnyRow) -> Result<ApplicationRow, Problem> {
        let status: String = row.try_get("status")?;
        Ok(ApplicationRow {
            id: row.try_get("id")?,
            status: Status::parse(&status)
                .ok_or_else(|| Problem::internal(format!("unknown stored status `{status}`")))?,
            legal_name: row.try_get("legal_name")?,
            credit_code: row.try_get("credit_code")?,
            org_public_key: row.try_get("org_public_key")?,
            sealed_pii: row.try_get("sealed_pii")?,
            token_sha256: row.try_get("token_sha256")?,
            created_ms: row.try_get("created_ms")?,
            updated_ms: row.try_get("updated_ms")?,
            decided_ms: row.try_get("decided_ms")?,
            decided_by: row.try_get("decided_by")?,
            rejection_reason: row.try_get("rejection_reason")?,
            commitment: row.try_get("commitment")?,
            attestation_tx: row.try_get("attestation_tx")?,
            proposal_tx: row.try_get("proposal_tx")?,
            proposal_id: row.try_get("proposal_id")?,
            chain_error: row.try_get("chain_error")?,
        })
    }

    /// The application `id`, if any.
    pub(crate) async fn load(db: &Db, id: &str) -> Result<Option<ApplicationRow>, Problem> {
        let row = sqlx::query(concat!(
            "SELECT ",
            application_columns!(),
            " FROM identity_applications WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
        row.as_ref().map(ApplicationRow::from_row).transpose()
    }
}

/// A document's metadata (its name opened).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DocumentMeta {
    /// The document id.
    pub document_id: String,
    /// The file name given at upload.
    pub name: String,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// The content type given at upload.
    pub content_type: String,
    /// Upload time, unix milliseconds.
    pub created_ms: i64,
}

/// The documents of an application, oldest first, names opened.
pub(crate) async fn documents(
    db: &Db,
    keyring: &Keyring,
    application_id: &str,
) -> Result<Vec<DocumentMeta>, Problem> {
    let rows = sqlx::query(
        "SELECT id, sealed_name, sha256, size, content_type, created_ms FROM identity_documents \
         WHERE application_id = $1 ORDER BY created_ms, id",
    )
    .bind(application_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let sealed_name: Vec<u8> = row.try_get("sealed_name")?;
            let name = keyring
                .open(&sealed_name, &document_aad(application_id, &id, "name"))
                .map_err(Problem::internal)?;
            Ok(DocumentMeta {
                name: String::from_utf8(name).map_err(Problem::internal)?,
                document_id: id,
                sha256: row.try_get("sha256")?,
                size: row.try_get("size")?,
                content_type: row.try_get("content_type")?,
                created_ms: row.try_get("created_ms")?,
            })
        })
        .collect()
}
