//! The name-or-id search that campaign and step lists share.

use crate::CampaignError;

/// A checked search text: a folded `LIKE` pattern, and the id it names when it is a number.
pub(crate) struct NameFilter(Option<(String, Option<i64>)>);

impl NameFilter {
    pub(crate) fn parse(q: Option<&str>) -> Result<Self, CampaignError> {
        let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
            return Ok(NameFilter(None));
        };
        mailbaar_store::check_search_text(q)
            .map_err(|p| CampaignError::invalid("q", p.to_string()))?;
        let pattern = format!(
            "%{}%",
            mailbaar_store::escape_like(&mailbaar_store::fold(q))
        );
        Ok(NameFilter(Some((pattern, q.parse().ok()))))
    }

    pub(crate) fn parts(&self) -> Option<(&str, Option<i64>)> {
        self.0.as_ref().map(|(p, id)| (p.as_str(), *id))
    }
}

/// `mailbaar_fold(column) LIKE pattern ESCAPE '\'`: the one folding rule of every search.
macro_rules! folded_like {
    ($column:literal, $pattern:expr) => {
        diesel::dsl::sql::<diesel::sql_types::Bool>(concat!("mailbaar_fold(", $column, ") LIKE "))
            .bind::<diesel::sql_types::Text, _>($pattern.to_owned())
            .sql(" ESCAPE '\\'")
    };
}
pub(crate) use folded_like;
