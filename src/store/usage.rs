//! Requests per client per hour and per day, counted in the database so that every process
//! sharing it enforces one limit.

use super::{Millis, Store, StoreResult};

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;

/// A client's requests so far in the current hour and day, this one included, and when
/// those windows end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub this_hour: i64,
    pub hour_ends: Millis,
    pub today: i64,
    pub day_ends: Millis,
}

impl Store {
    /// Counts one request of the client's at `now` and answers the counts with it.
    pub async fn count_request(&self, client_id: &str, now: Millis) -> StoreResult<Usage> {
        let hour_start = now - now.rem_euclid(HOUR);
        let day_start = now - now.rem_euclid(DAY);
        let this_hour = self.increment(client_id, "hour", hour_start).await?;
        let today = self.increment(client_id, "day", day_start).await?;
        Ok(Usage {
            this_hour,
            hour_ends: hour_start + HOUR,
            today,
            day_ends: day_start + DAY,
        })
    }

    async fn increment(
        &self,
        client_id: &str,
        window_kind: &str,
        start: Millis,
    ) -> StoreResult<i64> {
        // One statement, so concurrent requests never lose a count.
        Ok(sqlx::query_scalar(
            "INSERT INTO client_usage (client_id, window_kind, window_start, requests) \
             VALUES ($1, $2, $3, 1) \
             ON CONFLICT (client_id, window_kind, window_start) \
             DO UPDATE SET requests = client_usage.requests + 1 RETURNING requests",
        )
        .bind(client_id)
        .bind(window_kind)
        .bind(start)
        .fetch_one(self.pool())
        .await?)
    }
}
