use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Which page of a list to return; every list in the API is paged the same way.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[serde(default)]
pub struct PageRequest {
    /// 1-based page number.
    #[param(minimum = 1, example = 1)]
    pub page: i64,
    /// Items per page, at most 500.
    #[param(minimum = 1, maximum = 500, example = 50)]
    pub per_page: i64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            per_page: 50,
        }
    }
}

impl PageRequest {
    pub const MAX_PER_PAGE: i64 = 500;

    /// The request with out-of-range values brought into range.
    pub fn clamped(self) -> Self {
        Self {
            page: self.page.max(1),
            per_page: self.per_page.clamp(1, Self::MAX_PER_PAGE),
        }
    }

    pub fn offset(self) -> i64 {
        let s = self.clamped();
        (s.page - 1) * s.per_page
    }

    pub fn limit(self) -> i64 {
        self.clamped().per_page
    }
}

/// One page of a list with the total, so a front end can draw its pager.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"items": [], "total": 0, "page": 1, "per_page": 50}))]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Number of items over all pages.
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, total: i64, request: PageRequest) -> Self {
        let r = request.clamped();
        Self {
            items,
            total,
            page: r.page,
            per_page: r.per_page,
        }
    }
}
