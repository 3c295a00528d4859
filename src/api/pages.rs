//! The seed's pagination: `?page=N`, 20 rows a page, answered as
//! `{count, next, previous, results}` with absolute URLs for the neighbouring pages.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;

use super::RequestOrigin;
use super::errors::ApiError;
use crate::store::{Page, PageRequest};

pub const PAGE_SIZE: i64 = 20;

/// Which page a listing asked for.
pub struct PageQuery {
    number: i64,
    path: String,
    origin: RequestOrigin,
}

impl<S: Send + Sync> FromRequestParts<S> for PageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let page = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "page")
            .map(|(_, value)| value);
        let number = match page {
            None => 1,
            Some(value) => value
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=i64::MAX / PAGE_SIZE).contains(n))
                .ok_or_else(|| ApiError::not_found("Invalid page"))?,
        };
        let origin = RequestOrigin::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        Ok(PageQuery {
            number,
            path: parts.uri.path().to_owned(),
            origin,
        })
    }
}

impl PageQuery {
    pub fn request(&self) -> PageRequest {
        PageRequest {
            offset: (self.number - 1) * PAGE_SIZE,
            size: PAGE_SIZE,
        }
    }

    /// The page's answer, its rows made into `T`; 404 for a page past the last, as the seed.
    pub fn answer<R, T>(
        &self,
        page: Page<R>,
        to_body: impl Fn(R) -> T,
    ) -> Result<Paginated<T>, ApiError> {
        if self.number > 1 && self.request().offset >= page.total {
            return Err(ApiError::not_found("Invalid page"));
        }
        let link = |number: i64| {
            self.origin
                .http_url(&format!("{}?page={number}", self.path))
        };
        let more = self.request().offset + PAGE_SIZE < page.total;
        Ok(Paginated {
            count: page.total,
            next: more.then(|| link(self.number + 1)),
            previous: (self.number > 1).then(|| link(self.number - 1)),
            results: page.items.into_iter().map(to_body).collect(),
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Paginated<T> {
    pub count: i64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<T>,
}
