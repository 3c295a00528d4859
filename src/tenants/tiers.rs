//! A client's tier: its default rate limits and what its answers list as its features.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Basic,
    Premium,
    Enterprise,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Basic => "basic",
            Tier::Premium => "premium",
            Tier::Enterprise => "enterprise",
        }
    }

    pub fn parse(name: &str) -> Option<Tier> {
        [Tier::Basic, Tier::Premium, Tier::Enterprise]
            .into_iter()
            .find(|tier| tier.name() == name)
    }

    /// Requests per hour and per day a new client of this tier may make.
    pub fn rate_limits(self) -> (i64, i64) {
        match self {
            Tier::Basic => (1_000, 10_000),
            Tier::Premium => (10_000, 100_000),
            Tier::Enterprise => (100_000, 1_000_000),
        }
    }

    /// What every client can use here, whatever its tier: face-service does not sell
    /// features by tier, only capacity.
    pub fn features(self) -> [&'static str; 3] {
        [
            "face_enrollment",
            "face_authentication",
            "liveness_detection",
        ]
    }
}
