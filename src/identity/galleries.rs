//! Each tenant's gallery, held in memory for the 1:N search and kept in step with the store:
//! every use checks the tenant's gallery version (one indexed read) and reloads when another
//! process, or this one, changed its templates; a sweep every second drops the galleries whose
//! tenant changed, so that a deleted user's templates leave every process's memory too.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::matching::{Gallery, Template};
use crate::store::templates::TemplateRow;
use crate::store::{Store, StoreError, StoreResult};
use crate::tenants::sealing::Sealer;

/// A tenant's templates, keyed by their user's `external_user_id`, as of one version.
pub struct HeldGallery {
    pub version: i64,
    /// What may match: every live template, and the reference photo's of each user who has
    /// none yet and whose photo the tenant marked for matching.
    pub gallery: Gallery<String>,
    /// Each user's reference photo, matching or not.
    pub photos: HashMap<String, Template>,
}

pub struct Galleries {
    store: Store,
    /// Opens the templates (the template key).
    sealer: Sealer,
    held: Mutex<HashMap<String, Arc<HeldGallery>>>,
}

impl Galleries {
    pub fn new(store: Store, sealer: Sealer) -> Self {
        Self {
            store,
            sealer,
            held: Mutex::default(),
        }
    }

    /// The client's gallery as the store has it now.
    pub async fn of(&self, client_id: &str) -> StoreResult<Arc<HeldGallery>> {
        // The version is read before the templates: a change between the two makes the held
        // gallery newer than its version says, and the next use reloads it; never older.
        let version = self.store.gallery_version(client_id).await?.unwrap_or(-1);
        if let Some(held) = self.held_now(client_id)
            && held.version == version
        {
            return Ok(held);
        }
        let rows = self.store.client_templates(client_id).await?;
        let enrolled: HashSet<&str> = rows
            .iter()
            .filter(|row| row.source == "live")
            .map(|row| row.external_user_id.as_str())
            .collect();
        let mut gallery = Gallery::default();
        let mut photos = HashMap::new();
        for row in &rows {
            let template = self.open(row)?;
            let user = &row.external_user_id;
            let matches = row.source == "live"
                || (row.for_matching != 0 && !enrolled.contains(user.as_str()));
            if matches {
                gallery.insert(user.clone(), &template);
            }
            if row.source == "photo" {
                photos.insert(user.clone(), template);
            }
        }
        let loaded = Arc::new(HeldGallery {
            version,
            gallery,
            photos,
        });
        let mut held = self.held.lock().expect("the galleries are never poisoned");
        let newer_held = held
            .get(client_id)
            .is_some_and(|other| other.version > version);
        if !newer_held {
            held.insert(client_id.to_owned(), loaded.clone());
        }
        Ok(loaded)
    }

    /// Seals a template for the store.
    pub fn seal(&self, template: &Template) -> String {
        self.sealer.seal(&template.to_bytes())
    }

    fn open(&self, row: &TemplateRow) -> StoreResult<Template> {
        let damaged = |what: &str| {
            StoreError::Damaged(format!(
                "template {} of client {}: {what}",
                row.id, row.client_id
            ))
        };
        let bytes = self
            .sealer
            .open(&row.template_sealed)
            .map_err(|_| damaged("does not open with the template key"))?;
        Template::from_bytes(&bytes).map_err(|e| damaged(&e.to_string()))
    }

    fn held_now(&self, client_id: &str) -> Option<Arc<HeldGallery>> {
        self.held
            .lock()
            .expect("the galleries are never poisoned")
            .get(client_id)
            .cloned()
    }

    /// Drops every held gallery whose tenant's templates changed, or whose tenant is gone.
    pub async fn drop_stale(&self) -> StoreResult<()> {
        let versions: HashMap<String, i64> =
            self.store.gallery_versions().await?.into_iter().collect();
        self.held
            .lock()
            .expect("the galleries are never poisoned")
            .retain(|client, held| versions.get(client) == Some(&held.version));
        Ok(())
    }

    /// Sweeps every second until the task is aborted.
    pub fn spawn_sweep(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let galleries = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = galleries.drop_stale().await {
                    tracing::warn!(%error, "checking the held galleries against the store");
                }
            }
        })
    }

    /// Templates held in memory, over every tenant.
    pub fn templates_held(&self) -> usize {
        self.held
            .lock()
            .expect("the galleries are never poisoned")
            .values()
            .map(|held| held.gallery.len())
            .sum()
    }
}
