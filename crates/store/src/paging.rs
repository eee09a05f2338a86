use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Which page of a list to return; every list in the API is paged the same way. A value
/// outside its range is refused (422 naming the parameter), never brought into range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct PageRequest {
    /// 1-based page number, at most 1000000000.
    // The literals are `MIN_PAGE`, `MAX_PAGE` and `MAX_PER_PAGE`; a test keeps them equal.
    #[param(minimum = 1, maximum = 1_000_000_000, example = 1)]
    pub page: i64,
    /// Items per page, 1 to 500.
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

/// A refused paging value: the parameter's name and why.
pub type PagingIssue = (&'static str, String);

impl PageRequest {
    pub const MIN_PAGE: i64 = 1;
    /// The last page anyone may ask for; it keeps `(page - 1) * per_page` well inside `i64`.
    pub const MAX_PAGE: i64 = 1_000_000_000;
    pub const MAX_PER_PAGE: i64 = 500;

    /// The request for values as a client gave them (`None`: left out, the default), or
    /// every value that is out of range, by name.
    pub fn checked(page: Option<i64>, per_page: Option<i64>) -> Result<Self, Vec<PagingIssue>> {
        Self::from_given(page.map(Some), per_page.map(Some))
    }

    /// As [`PageRequest::checked`], from query-string text (`?page=2&per_page=100`).
    pub fn from_text(page: Option<&str>, per_page: Option<&str>) -> Result<Self, Vec<PagingIssue>> {
        let number = |s: &str| s.parse::<i64>().ok();
        Self::from_given(page.map(number), per_page.map(number))
    }

    /// The request for values as given: `None` left out (the default), `Some(None)` given
    /// but not a whole number that fits in 64 bits, `Some(Some(n))` the number.
    pub fn from_given(
        page: Option<Option<i64>>,
        per_page: Option<Option<i64>>,
    ) -> Result<Self, Vec<PagingIssue>> {
        let d = Self::default();
        let mut issues = Vec::new();
        let mut one =
            |name: &'static str, given: Option<Option<i64>>, max: i64, default: i64| match given {
                None => default,
                Some(Some(n)) if (1..=max).contains(&n) => n,
                Some(_) => {
                    issues.push((name, format!("expected a whole number from 1 to {max}")));
                    default
                }
            };
        let request = Self {
            page: one("page", page, Self::MAX_PAGE, d.page),
            per_page: one("per_page", per_page, Self::MAX_PER_PAGE, d.per_page),
        };
        if issues.is_empty() {
            Ok(request)
        } else {
            Err(issues)
        }
    }

    /// The request with out-of-range values brought into range, for callers inside the
    /// process that built a request by hand; requests from clients are checked instead.
    pub fn clamped(self) -> Self {
        Self {
            page: self.page.clamp(Self::MIN_PAGE, Self::MAX_PAGE),
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
    /// The page returned (1-based).
    pub page: i64,
    /// Items per page, as asked.
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

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    use utoipa::{IntoParams, Number};

    #[test]
    fn values_in_range_are_taken_and_defaults_fill_gaps() {
        assert_eq!(
            PageRequest::from_text(Some("3"), None),
            Ok(PageRequest {
                page: 3,
                per_page: 50
            })
        );
        assert_eq!(
            PageRequest::checked(Some(PageRequest::MAX_PAGE), Some(500)),
            Ok(PageRequest {
                page: PageRequest::MAX_PAGE,
                per_page: 500
            })
        );
        assert_eq!(PageRequest::checked(None, None), Ok(PageRequest::default()));
    }

    #[test]
    fn out_of_range_and_non_numbers_are_refused_by_name() {
        for bad in ["0", "-1", "501", "99999999999999999999", "abc", "1.5", ""] {
            let issues = PageRequest::from_text(None, Some(bad)).unwrap_err();
            assert_eq!(issues.len(), 1, "{bad}");
            assert_eq!(issues[0].0, "per_page");
        }
        for bad in ["0", "-1", "1000000001", "abc"] {
            assert_eq!(
                PageRequest::from_text(Some(bad), None).unwrap_err()[0].0,
                "page"
            );
        }
        let both = PageRequest::from_given(Some(None), Some(Some(0))).unwrap_err();
        assert_eq!(
            both.iter().map(|i| i.0).collect::<Vec<_>>(),
            ["page", "per_page"]
        );
    }

    #[test]
    fn the_documented_ranges_are_the_enforced_ones() {
        let params = PageRequest::into_params(|| None);
        let range = |name: &str| {
            let p = params.iter().find(|p| p.name == name).unwrap();
            let Some(RefOr::T(Schema::Object(o))) = &p.schema else {
                panic!("{name} has an inline schema")
            };
            let f = |n: &Option<Number>| match n {
                Some(Number::Int(i)) => Some(*i as f64),
                Some(Number::UInt(u)) => Some(*u as f64),
                Some(Number::Float(f)) => Some(*f),
                None => None,
            };
            (f(&o.minimum), f(&o.maximum))
        };
        let n = |v: i64| Some(v as f64);
        assert_eq!(
            range("page"),
            (n(PageRequest::MIN_PAGE), n(PageRequest::MAX_PAGE))
        );
        assert_eq!(range("per_page"), (n(1), n(PageRequest::MAX_PER_PAGE)));
    }
}
