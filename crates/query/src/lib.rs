//! The query engine: condition trees over persons, checked against one field registry and
//! compiled to one SQL condition that both engines run, with every value bound.
//!
//! A tree goes through three steps: [`Node::parse`] (structure), validation against the
//! [`Registry`] (fields, operators, value types, saved queries and their cycles), and
//! compilation. [`Selection`] holds the result and counts or lists persons. Saved queries
//! are stored trees that other trees include or exclude.

mod compile;
mod error;
mod fields;
mod resolve;
mod saved;
mod selection;
mod tree;

pub use compile::SqlCondition;
pub use error::{Issue, QueryError};
pub use fields::{FieldInfo, Parameter, Registry, ValueType};
pub use resolve::{MAX_DAYS, MAX_EXPANDED_NODES, MAX_IN_VALUES, MAX_QUERY_NESTING, MAX_TEXT};
pub use saved::{
    copy_query, create_query, delete_query, get_query, list_queries, replace_query, suggest_name,
    QueryCopy, SavedQuery, SavedQueryFilter, SavedQueryInput, SavedQuerySelector,
};
pub use selection::{run, RunOptions, RunResult, Selection, DEFAULT_COLUMNS, RESULT_COLUMNS};
pub use tree::{Condition, Node, Op, MAX_DEPTH, MAX_NODES};

use mailbaar_store::DbConnection;

/// Every field conditions may use in this database, for condition editors.
pub fn fields(conn: &mut DbConnection) -> Result<Vec<FieldInfo>, QueryError> {
    Ok(Registry::load(conn)?.fields())
}
