//! Tidal's embedded state: Kubernetes objects in SQLite, with the metadata semantics the API
//! server gives them (uid, resourceVersion, generation, creationTimestamp, owner cascade on
//! delete, optimistic concurrency) and a watch stream of changes.
//!
//! One global resourceVersion counter orders every change, as etcd's revision does, so a watch
//! can resume from any recent version. Objects are stored as JSON; the API layer types them.

pub mod resource;
pub mod selector;
pub mod time;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use tokio::sync::broadcast;

pub use resource::Resource;
pub use selector::LabelSelector;

/// How many past changes are kept for watches that resume from a resourceVersion.
const EVENT_HISTORY: i64 = 10_000;

/// What went wrong, in the terms of Kubernetes' `Status` reasons.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object.
    #[error("{resource} {name:?} not found")]
    NotFound {
        /// `plural.group`.
        resource: String,
        /// Object name.
        name: String,
    },
    /// The name is taken.
    #[error("{resource} {name:?} already exists")]
    AlreadyExists {
        /// `plural.group`.
        resource: String,
        /// Object name.
        name: String,
    },
    /// The client's resourceVersion is stale.
    #[error(
        "Operation cannot be fulfilled on {resource} {name:?}: the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// `plural.group`.
        resource: String,
        /// Object name.
        name: String,
    },
    /// The object is malformed (no name, not an object, ...).
    #[error("{0}")]
    Invalid(String),
    /// A watch asked for a resourceVersion older than the kept history.
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        /// What was asked for.
        requested: u64,
        /// The oldest version still available.
        oldest: u64,
    },
    /// The database failed.
    #[error("storage error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// `ADDED`, `MODIFIED` or `DELETED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed (the object as it was last).
    Deleted,
}

impl EventType {
    /// The watch event type name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "ADDED" => EventType::Added,
            "DELETED" => EventType::Deleted,
            _ => EventType::Modified,
        }
    }
}

/// One change.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub type_: EventType,
    /// To which kind.
    pub resource: Resource,
    /// The object after the change (before it, for deletions).
    pub object: Arc<Value>,
    /// The change's resourceVersion.
    pub resource_version: u64,
}

impl Event {
    /// The object's namespace, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }
    /// The object's name.
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Which part of an object an update writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateScope {
    /// Everything but `status` (kept from the stored object), as a PUT on the object.
    Main,
    /// Only `status`, as a PUT on `/status`.
    Status,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    db: Mutex<Connection>,
    events: broadcast::Sender<Event>,
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::init(Connection::open(path)?)
    }

    /// A store that lives in memory (tests).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS objects (
                 resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                 uid TEXT NOT NULL, rv INTEGER NOT NULL, body TEXT NOT NULL,
                 PRIMARY KEY (resource, namespace, name));
             CREATE INDEX IF NOT EXISTS objects_uid ON objects (uid);
             CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 0), rv INTEGER NOT NULL);
             INSERT OR IGNORE INTO counter (id, rv) VALUES (0, 1);
             CREATE TABLE IF NOT EXISTS events (
                 rv INTEGER PRIMARY KEY, resource TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL);",
        )?;
        let (events, _) = broadcast::channel(4096);
        Ok(Store {
            db: Mutex::new(conn),
            events,
        })
    }

    /// A receiver of every future change.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The newest resourceVersion.
    pub fn resource_version(&self) -> Result<u64> {
        let db = self.db.lock().expect("store lock");
        Ok(
            db.query_row("SELECT rv FROM counter WHERE id = 0", [], |r| {
                r.get::<_, i64>(0)
            })? as u64,
        )
    }

    /// Changes after `rv` (for watches resuming from a resourceVersion).
    pub fn events_since(&self, rv: u64) -> Result<Vec<Event>> {
        let db = self.db.lock().expect("store lock");
        let oldest: Option<i64> = db.query_row("SELECT MIN(rv) FROM events", [], |r| r.get(0))?;
        let current: i64 = db.query_row("SELECT rv FROM counter WHERE id = 0", [], |r| r.get(0))?;
        if let Some(oldest) = oldest
            && (rv as i64) < oldest - 1
            && (rv as i64) < current
        {
            return Err(StoreError::Gone {
                requested: rv,
                oldest: oldest as u64,
            });
        }
        let mut stmt =
            db.prepare("SELECT rv, resource, type, body FROM events WHERE rv > ?1 ORDER BY rv")?;
        let rows = stmt.query_map(params![rv as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (rv, res, type_, body) = row?;
            if let Some(resource) = resource::ALL.iter().find(|r| r.qualified() == res) {
                out.push(Event {
                    type_: EventType::parse(&type_),
                    resource: *resource,
                    object: Arc::new(
                        serde_json::from_str(&body)
                            .map_err(|e| StoreError::Invalid(e.to_string()))?,
                    ),
                    resource_version: rv as u64,
                });
            }
        }
        Ok(out)
    }

    /// Creates an object: assigns uid, resourceVersion, generation 1 and creationTimestamp
    /// (and a name from `generateName`).
    pub fn create(&self, r: Resource, namespace: Option<&str>, mut obj: Value) -> Result<Value> {
        let db = self.db.lock().expect("store lock");
        let ns = scope(r, namespace, &obj);
        let meta = metadata_mut(&mut obj)?;
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if prefix.is_empty() {
                return Err(StoreError::Invalid(
                    "metadata.name: Required value: name or generateName is required".into(),
                ));
            }
            meta.insert(
                "name".into(),
                json!(format!("{prefix}{}", random_suffix(5))),
            );
        }
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        if db
            .query_row(
                "SELECT 1 FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3",
                params![r.qualified(), ns, name],
                |_| Ok(()),
            )
            .optional()?
            .is_some()
        {
            return Err(StoreError::AlreadyExists {
                resource: r.qualified(),
                name,
            });
        }
        let rv = next_rv(&db)?;
        let uid = uuid::Uuid::new_v4().to_string();
        if r.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!(time::now()));
        meta.remove("deletionTimestamp");
        set_type_meta(r, &mut obj);
        let body = obj.to_string();
        db.execute(
            "INSERT INTO objects (resource, namespace, name, uid, rv, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![r.qualified(), ns, name, uid, rv as i64, body],
        )?;
        self.record(&db, EventType::Added, r, &obj, rv)?;
        Ok(obj)
    }

    /// Reads one object.
    pub fn get(&self, r: Resource, namespace: Option<&str>, name: &str) -> Result<Value> {
        let db = self.db.lock().expect("store lock");
        get_locked(&db, r, namespace.unwrap_or_default(), name)
    }

    /// Lists objects in a namespace (or all namespaces with `None`) matching `selector`, with the
    /// resourceVersion the list is consistent at.
    pub fn list(
        &self,
        r: Resource,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<(Vec<Value>, u64)> {
        let db = self.db.lock().expect("store lock");
        let rv: i64 = db.query_row("SELECT rv FROM counter WHERE id = 0", [], |row| row.get(0))?;
        let mut out = Vec::new();
        let mut push = |body: String| -> Result<()> {
            let v: Value =
                serde_json::from_str(&body).map_err(|e| StoreError::Invalid(e.to_string()))?;
            if selector.matches(&v) {
                out.push(v);
            }
            Ok(())
        };
        match (r.namespaced, namespace) {
            (true, Some(ns)) => {
                let mut stmt = db.prepare(
                    "SELECT body FROM objects WHERE resource = ?1 AND namespace = ?2 ORDER BY name",
                )?;
                for body in
                    stmt.query_map(params![r.qualified(), ns], |row| row.get::<_, String>(0))?
                {
                    push(body?)?;
                }
            }
            _ => {
                let mut stmt = db.prepare(
                    "SELECT body FROM objects WHERE resource = ?1 ORDER BY namespace, name",
                )?;
                for body in stmt.query_map(params![r.qualified()], |row| row.get::<_, String>(0))? {
                    push(body?)?;
                }
            }
        }
        Ok((out, rv as u64))
    }

    /// Replaces an object (or its status). A non-empty `metadata.resourceVersion` must match the
    /// stored one, or the update is a [`StoreError::Conflict`]. The generation goes up when the
    /// spec changes.
    pub fn update(
        &self,
        r: Resource,
        namespace: Option<&str>,
        obj: Value,
        scope_: UpdateScope,
    ) -> Result<Value> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let expected = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.modify(
            r,
            namespace,
            &name,
            expected.as_deref(),
            scope_,
            move |_| Ok::<_, StoreError>(obj),
        )
    }

    /// Read-modify-write under the store's lock: `f` gets the stored object and returns the new
    /// one. Used for patches, so concurrent patches never lose an update.
    pub fn modify<E: From<StoreError>>(
        &self,
        r: Resource,
        namespace: Option<&str>,
        name: &str,
        expected_rv: Option<&str>,
        scope_: UpdateScope,
        f: impl FnOnce(&Value) -> Result<Value, E>,
    ) -> Result<Value, E> {
        let db = self.db.lock().expect("store lock");
        let ns = if r.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        let current = get_locked(&db, r, ns, name)?;
        if let Some(expected) = expected_rv.filter(|e| !e.is_empty())
            && current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                != Some(expected)
        {
            return Err(StoreError::Conflict {
                resource: r.qualified(),
                name: name.into(),
            }
            .into());
        }
        let proposed = f(&current)?;
        let mut next = match scope_ {
            UpdateScope::Status => {
                let mut next = current.clone();
                match proposed.get("status") {
                    Some(s) => next["status"] = s.clone(),
                    None => {
                        if let Some(o) = next.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                next
            }
            UpdateScope::Main => {
                let mut next = proposed;
                if r.has_status {
                    match current.get("status") {
                        Some(s) => next["status"] = s.clone(),
                        None => {
                            if let Some(o) = next.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
                next
            }
        };
        // Server-owned metadata survives whatever the client sent.
        let old_meta = current.get("metadata").cloned().unwrap_or_default();
        let meta = metadata_mut(&mut next).map_err(E::from)?;
        for key in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "generation",
            "deletionTimestamp",
        ] {
            match old_meta.get(key) {
                Some(v) => {
                    meta.insert(key.into(), v.clone());
                }
                None => {
                    meta.remove(key);
                }
            }
        }
        let spec_changed = if r.has_status {
            current.get("spec") != next.get("spec")
        } else {
            strip_meta(&current) != strip_meta(&next)
        };
        if scope_ == UpdateScope::Main && spec_changed {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            next["metadata"]["generation"] = json!(g + 1);
        }
        set_type_meta(r, &mut next);
        // No change, no new version (keeps controllers from looping on no-op writes).
        if strip_rv(&current) == strip_rv(&next) {
            return Ok(current);
        }
        let rv = next_rv(&db)?;
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        db.execute(
            "UPDATE objects SET rv = ?1, body = ?2 WHERE resource = ?3 AND namespace = ?4 AND name = ?5",
            params![rv as i64, next.to_string(), r.qualified(), ns, name],
        )
        .map_err(StoreError::from)?;
        self.record(&db, EventType::Modified, r, &next, rv)?;
        Ok(next)
    }

    /// Deletes an object and, recursively, every object that names it as an owner (Kubernetes'
    /// background cascading deletion, done at once).
    pub fn delete(&self, r: Resource, namespace: Option<&str>, name: &str) -> Result<Value> {
        let db = self.db.lock().expect("store lock");
        let ns = if r.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        let obj = get_locked(&db, r, ns, name)?;
        self.delete_locked(&db, r, ns, &obj)?;
        Ok(obj)
    }

    fn delete_locked(&self, db: &Connection, r: Resource, ns: &str, obj: &Value) -> Result<()> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        db.execute(
            "DELETE FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3",
            params![r.qualified(), ns, name],
        )?;
        let rv = next_rv(db)?;
        let mut gone = obj.clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(db, EventType::Deleted, r, &gone, rv)?;
        // Dependents: objects whose ownerReferences name this uid.
        let dependents: Vec<(String, String, String)> = {
            let mut stmt =
                db.prepare("SELECT resource, namespace, body FROM objects WHERE body LIKE ?1")?;
            let rows = stmt.query_map(params![format!("%{uid}%")], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        for (res, dns, body) in dependents {
            let Ok(dep) = serde_json::from_str::<Value>(&body) else {
                continue;
            };
            let owned = dep
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid.as_str()))
                });
            if let (true, Some(dr)) = (owned, resource::ALL.iter().find(|x| x.qualified() == res)) {
                self.delete_locked(db, *dr, &dns, &dep)?;
            }
        }
        Ok(())
    }

    fn record(
        &self,
        db: &Connection,
        type_: EventType,
        r: Resource,
        obj: &Value,
        rv: u64,
    ) -> Result<()> {
        db.execute(
            "INSERT INTO events (rv, resource, type, body) VALUES (?1, ?2, ?3, ?4)",
            params![rv as i64, r.qualified(), type_.as_str(), obj.to_string()],
        )?;
        if rv as i64 % 1000 == 0 {
            db.execute(
                "DELETE FROM events WHERE rv <= ?1",
                params![rv as i64 - EVENT_HISTORY],
            )?;
        }
        // No receivers is fine.
        let _ = self.events.send(Event {
            type_,
            resource: r,
            object: Arc::new(obj.clone()),
            resource_version: rv,
        });
        Ok(())
    }
}

fn scope(r: Resource, namespace: Option<&str>, obj: &Value) -> String {
    if !r.namespaced {
        return String::new();
    }
    namespace
        .map(str::to_string)
        .or_else(|| {
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "default".into())
}

fn get_locked(db: &Connection, r: Resource, ns: &str, name: &str) -> Result<Value> {
    let ns = if r.namespaced {
        if ns.is_empty() { "default" } else { ns }
    } else {
        ""
    };
    let body: Option<String> = db
        .query_row(
            "SELECT body FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3",
            params![r.qualified(), ns, name],
            |row| row.get(0),
        )
        .optional()?;
    match body {
        Some(b) => serde_json::from_str(&b).map_err(|e| StoreError::Invalid(e.to_string())),
        None => Err(StoreError::NotFound {
            resource: r.qualified(),
            name: name.into(),
        }),
    }
}

fn next_rv(db: &Connection) -> Result<u64> {
    db.execute("UPDATE counter SET rv = rv + 1 WHERE id = 0", [])?;
    Ok(
        db.query_row("SELECT rv FROM counter WHERE id = 0", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

fn metadata_mut(obj: &mut Value) -> Result<&mut serde_json::Map<String, Value>> {
    let o = obj
        .as_object_mut()
        .ok_or_else(|| StoreError::Invalid("the object must be a JSON object".into()))?;
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    meta.as_object_mut()
        .ok_or_else(|| StoreError::Invalid("metadata must be an object".into()))
}

fn set_type_meta(r: Resource, obj: &mut Value) {
    obj["apiVersion"] = json!(r.api_version());
    obj["kind"] = json!(r.kind);
}

fn strip_meta(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

fn strip_rv(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

/// An object's namespace (`default` when it has none) and name, as the controllers key
/// objects.
pub fn namespace_and_name(object: &Value) -> (&str, &str) {
    let field = |path| object.pointer(path).and_then(Value::as_str);
    (
        field("/metadata/namespace").unwrap_or("default"),
        field("/metadata/name").unwrap_or_default(),
    )
}

/// Five (or `n`) characters from Kubernetes' name-suffix alphabet (no vowels, no look-alikes).
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    (0..n)
        .map(|i| ALPHABET[bytes[i % 16] as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests;
