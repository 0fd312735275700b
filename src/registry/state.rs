//! Everything the registry knows, its rules, and its `--data` file.
//!
//! Rules (Confluent's): schemas get global IDs from 1 up; a schema is its
//! type, its text (compared by identity, see `schema`) and its references,
//! and the same schema gets the same ID under every subject. A subject's
//! versions count from 1; registering a schema a subject already has returns
//! its existing version. References name a subject and version that must
//! exist; a subject whose versions are referenced cannot be deleted. IDs
//! outlive their subjects.
//!
//! The data file is JSON: `schemas` (index `n - 1` is ID `n`) and
//! `subjects` (each a list of IDs, index `v - 1` is version `v`, `0` for a
//! deleted version). A schema is
//! written as a plain string when it is Avro without references, which is
//! also how files from before schema types and references read.

use super::schema::{self, Dependency, SchemaType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A reference from one schema to a subject's version, known to the schema
/// as `name` (an Avro type name, a Protobuf import path, a JSON Schema URL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    /// At registration `-1` means the subject's latest version; stored
    /// references always name the version they resolved to.
    pub version: i32,
}

/// A registered schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OnDisk", into = "OnDisk")]
pub struct StoredSchema {
    pub text: String,
    pub kind: SchemaType,
    pub references: Vec<Reference>,
}

/// A schema in the data file: older files hold plain strings (Avro).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OnDisk {
    Text(String),
    Full {
        schema: String,
        #[serde(rename = "schemaType", default)]
        kind: SchemaType,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        references: Vec<Reference>,
    },
}

impl From<OnDisk> for StoredSchema {
    fn from(disk: OnDisk) -> StoredSchema {
        match disk {
            OnDisk::Text(text) => StoredSchema { text, kind: SchemaType::Avro, references: Vec::new() },
            OnDisk::Full { schema, kind, references } => StoredSchema { text: schema, kind, references },
        }
    }
}

impl From<StoredSchema> for OnDisk {
    fn from(stored: StoredSchema) -> OnDisk {
        if stored.kind == SchemaType::Avro && stored.references.is_empty() {
            OnDisk::Text(stored.text)
        } else {
            OnDisk::Full { schema: stored.text, kind: stored.kind, references: stored.references }
        }
    }
}

/// Why a request cannot be served; each maps to Confluent's status and code.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("Schema {0} not found")]
    SchemaNotFound(u32),
    #[error("Schema not found")]
    NotRegistered,
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "Invalid schema: reference '{name}' names subject '{subject}' version {version}, which does not \
         exist; register the referenced schema first"
    )]
    MissingReference { name: String, subject: String, version: i32 },
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] \
         and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "One or more references exist to the schema {{subject={subject},version={version}}}: schema IDs \
         {ids:?} use it; delete the subjects of those schemas first"
    )]
    ReferenceExists { subject: String, version: usize, ids: Vec<u32> },
}

impl RegistryError {
    /// HTTP status and Confluent error code.
    pub fn status_and_code(&self) -> (u16, i64) {
        match self {
            RegistryError::SubjectNotFound(_) => (404, 40401),
            RegistryError::VersionNotFound(_) => (404, 40402),
            RegistryError::SchemaNotFound(_) | RegistryError::NotRegistered => (404, 40403),
            RegistryError::InvalidSchema(_) | RegistryError::MissingReference { .. } => (422, 42201),
            RegistryError::InvalidVersion(_) => (422, 42202),
            RegistryError::ReferenceExists { .. } => (422, 42206),
        }
    }
}

/// A schema from a request, checked, with its references resolved and the
/// key that identifies it.
pub struct Candidate {
    pub schema: StoredSchema,
    key: String,
}

/// The ID a deleted version has in its subject's list.
const DELETED: u32 = 0;

/// Everything the registry knows; also the `--data` file's format.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct State {
    schemas: Vec<StoredSchema>,
    subjects: BTreeMap<String, Vec<u32>>,
    /// The identity key of each schema, index for index; rebuilt on load.
    #[serde(skip)]
    keys: Vec<String>,
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl State {
    /// The state in `path`; empty when the file does not exist or is empty.
    pub fn load(path: &Path) -> io::Result<State> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => {
                let message = format!("cannot read schema registry data {}: {e}", path.display());
                return Err(io::Error::new(e.kind(), message));
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(State::default());
        }
        let bad = |what: String| {
            invalid_data(format!("schema registry data {} {what}; fix or delete the file", path.display()))
        };
        let mut state: State = serde_json::from_slice(&bytes).map_err(|e| bad(format!("is not valid: {e}")))?;
        let count = state.schemas.len() as u32;
        if let Some((subject, _)) = state.subjects.iter().find(|(_, ids)| ids.iter().any(|id| *id > count)) {
            return Err(bad(format!("names a schema ID that does not exist under subject '{subject}'")));
        }
        for i in 0..state.schemas.len() {
            let key =
                state.key_of(&state.schemas[i]).map_err(|e| bad(format!("has an invalid schema {}: {e}", i + 1)))?;
            state.keys.push(key);
        }
        Ok(state)
    }

    /// Writes to `path` atomically: a temporary file, then a rename.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    pub fn schema(&self, id: u32) -> Result<&StoredSchema, RegistryError> {
        (id as usize).checked_sub(1).and_then(|i| self.schemas.get(i)).ok_or(RegistryError::SchemaNotFound(id))
    }

    /// Subjects with at least one version.
    pub fn subject_names(&self) -> impl Iterator<Item = &str> {
        self.subjects.iter().filter(|(_, ids)| ids.iter().any(|id| *id != DELETED)).map(|(s, _)| s.as_str())
    }

    /// `subject`'s versions as (version number, ID), oldest first; deleted
    /// versions left out.
    pub fn versions(&self, subject: &str) -> Result<Vec<(usize, u32)>, RegistryError> {
        let live: Vec<(usize, u32)> = self
            .subjects
            .get(subject)
            .map(|ids| ids.iter().enumerate().filter(|(_, id)| **id != DELETED).map(|(i, id)| (i + 1, *id)).collect())
            .unwrap_or_default();
        if live.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(live)
    }

    /// The (version number, ID) of `version`: a number, `latest` or `-1`.
    pub fn version(&self, subject: &str, version: &str) -> Result<(usize, u32), RegistryError> {
        let wanted = match version {
            "latest" | "-1" => None,
            v => Some(
                v.parse::<i32>().ok().filter(|n| *n >= 1).ok_or_else(|| RegistryError::InvalidVersion(v.to_string()))?
                    as usize,
            ),
        };
        let live = self.versions(subject)?;
        let found = match wanted {
            None => live.last(),
            Some(number) => live.iter().find(|(v, _)| *v == number),
        };
        found.copied().ok_or_else(|| RegistryError::VersionNotFound(version.to_string()))
    }

    /// Checks a schema from a request: its references must exist and its
    /// text must be valid for its type with them.
    pub fn candidate(&self, schema: StoredSchema) -> Result<Candidate, RegistryError> {
        let references =
            schema.references.iter().map(|r| self.resolve(r)).collect::<Result<Vec<Reference>, RegistryError>>()?;
        let mut schema = StoredSchema { references, ..schema };
        if schema.kind == SchemaType::Protobuf {
            let dependencies = self.dependencies(&schema.references).map_err(RegistryError::InvalidSchema)?;
            if let Some(text) = schema::protobuf_text(&schema.text, &dependencies) {
                schema.text = text;
            }
        }
        let key = self.key_of(&schema).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        Ok(Candidate { schema, key })
    }

    /// `reference` with `-1` replaced by the latest version; an error when
    /// the subject or version does not exist.
    fn resolve(&self, reference: &Reference) -> Result<Reference, RegistryError> {
        let missing = || RegistryError::MissingReference {
            name: reference.name.clone(),
            subject: reference.subject.clone(),
            version: reference.version,
        };
        let live = self.versions(&reference.subject).map_err(|_| missing())?;
        let found = match reference.version {
            -1 => live.last(),
            v => live.iter().find(|(number, _)| i64::try_from(*number) == Ok(i64::from(v))),
        };
        let (version, _) = found.ok_or_else(missing)?;
        Ok(Reference { version: *version as i32, ..reference.clone() })
    }

    fn id_at(&self, reference: &Reference) -> Option<u32> {
        let index = usize::try_from(reference.version).ok()?.checked_sub(1)?;
        self.subjects.get(&reference.subject)?.get(index).copied().filter(|id| *id != DELETED)
    }

    /// The identity key: type, references and the text's identity.
    fn key_of(&self, schema: &StoredSchema) -> Result<String, String> {
        let dependencies = self.dependencies(&schema.references)?;
        let identity = schema::identity(schema.kind, &schema.text, &dependencies).map_err(|e| e.to_string())?;
        let references = serde_json::to_string(&schema.references).unwrap_or_default();
        Ok(format!("{}\n{references}\n{identity}", schema.kind.as_str()))
    }

    /// Every schema `references` reach, directly or not, each once, the
    /// references of a schema before it.
    pub fn dependencies<'a>(&'a self, references: &'a [Reference]) -> Result<Vec<Dependency<'a>>, String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        self.collect(references, &mut seen, &mut out)?;
        Ok(out)
    }

    fn collect<'a>(
        &'a self,
        references: &'a [Reference],
        seen: &mut HashSet<u32>,
        out: &mut Vec<Dependency<'a>>,
    ) -> Result<(), String> {
        for reference in references {
            let id = self.id_at(reference).ok_or_else(|| {
                format!(
                    "reference '{}' to subject '{}' version {} does not exist",
                    reference.name, reference.subject, reference.version
                )
            })?;
            if !seen.insert(id) {
                continue;
            }
            let schema = self.schema(id).map_err(|e| e.to_string())?;
            self.collect(&schema.references, seen, out)?;
            out.push(Dependency { name: &reference.name, text: &schema.text });
        }
        Ok(())
    }

    /// The version and ID of `candidate` under `subject`, if registered there.
    pub fn find(&self, subject: &str, candidate: &Candidate) -> Option<(usize, u32)> {
        let id = self.id_of(&candidate.key)?;
        let index = self.subjects.get(subject)?.iter().position(|v| *v == id)?;
        Some((index + 1, id))
    }

    fn id_of(&self, key: &str) -> Option<u32> {
        self.keys.iter().position(|k| k == key).map(|i| i as u32 + 1)
    }

    /// Adds `candidate` as the next version of `subject`; returns its global ID.
    pub fn add_version(&mut self, subject: &str, candidate: Candidate) -> u32 {
        let id = self.id_of(&candidate.key).unwrap_or_else(|| {
            self.schemas.push(candidate.schema);
            self.keys.push(candidate.key);
            self.schemas.len() as u32
        });
        self.subjects.entry(subject.to_string()).or_default().push(id);
        id
    }

    /// Every (subject, version) that uses schema `id`.
    pub fn usages(&self, id: u32) -> Vec<(&str, usize)> {
        let mut out = Vec::new();
        for (subject, ids) in &self.subjects {
            out.extend(ids.iter().enumerate().filter(|(_, v)| **v == id).map(|(i, _)| (subject.as_str(), i + 1)));
        }
        out
    }

    /// IDs of the registered schemas that reference `subject`'s `version`.
    pub fn referenced_by(&self, subject: &str, version: usize) -> Vec<u32> {
        (1..=self.schemas.len() as u32)
            .filter(|id| {
                self.schemas[*id as usize - 1]
                    .references
                    .iter()
                    .any(|r| r.subject == subject && r.version as usize == version)
            })
            .filter(|id| !self.usages(*id).is_empty())
            .collect()
    }

    /// Removes `subject`; returns its version numbers. Refused while another
    /// registered schema references one of its versions.
    pub fn delete_subject(&mut self, subject: &str) -> Result<Vec<usize>, RegistryError> {
        let versions: Vec<usize> = self.versions(subject)?.into_iter().map(|(v, _)| v).collect();
        let mut next = self.clone();
        next.subjects.remove(subject);
        next.refuse_dangling(subject, &versions)?;
        *self = next;
        Ok(versions)
    }

    /// Removes one version of `subject` (a number, `latest` or `-1`); its
    /// number is not reused. Refused while a registered schema references it.
    pub fn delete_version(&mut self, subject: &str, version: &str) -> Result<usize, RegistryError> {
        let (number, _) = self.version(subject, version)?;
        let mut next = self.clone();
        let ids = next.subjects.get_mut(subject).ok_or_else(|| RegistryError::SubjectNotFound(subject.into()))?;
        ids[number - 1] = DELETED;
        if ids.iter().all(|id| *id == DELETED) {
            next.subjects.remove(subject);
        }
        next.refuse_dangling(subject, &[number])?;
        *self = next;
        Ok(number)
    }

    /// An error when a registered schema references one of `versions` of `subject`.
    fn refuse_dangling(&self, subject: &str, versions: &[usize]) -> Result<(), RegistryError> {
        for version in versions {
            let ids = self.referenced_by(subject, *version);
            if !ids.is_empty() {
                return Err(RegistryError::ReferenceExists { subject: subject.to_string(), version: *version, ids });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{"type":"record","name":"A","namespace":"t","fields":[{"name":"x","type":"string"}]}"#;
    const B: &str = r#"{"type":"record","name":"B","namespace":"t","fields":[{"name":"a","type":"t.A"}]}"#;

    fn avro(text: &str) -> StoredSchema {
        StoredSchema { text: text.to_string(), kind: SchemaType::Avro, references: Vec::new() }
    }

    fn referencing(text: &str, subject: &str, version: i32) -> StoredSchema {
        let reference = Reference { name: "t.A".into(), subject: subject.into(), version };
        StoredSchema { references: vec![reference], ..avro(text) }
    }

    fn add(state: &mut State, subject: &str, schema: StoredSchema) -> Result<u32, RegistryError> {
        let candidate = state.candidate(schema)?;
        Ok(state.add_version(subject, candidate))
    }

    #[test]
    fn one_id_per_schema_and_one_version_per_subject_schema() {
        let mut state = State::default();
        let b2 = r#"{"type":"record","name":"A","namespace":"t","fields":[]}"#;
        assert_eq!(add(&mut state, "a", avro(A)).unwrap(), 1);
        assert_eq!(add(&mut state, "a", avro(b2)).unwrap(), 2);
        assert_eq!(add(&mut state, "b", avro(A)).unwrap(), 1);
        let again = state.candidate(avro(b2)).unwrap();
        assert_eq!(state.find("a", &again), Some((2, 2)));
        assert_eq!(state.find("b", &again), None);
        assert_eq!(state.usages(1), vec![("a", 1), ("b", 1)]);
        assert!(state.schema(0).is_err());
        assert_eq!(state.schema(2).unwrap().text, b2);
    }

    #[test]
    fn references_must_resolve_and_are_part_of_the_identity() {
        let mut state = State::default();
        let missing = add(&mut state, "b", referencing(B, "a", 1)).unwrap_err();
        assert!(matches!(missing, RegistryError::MissingReference { .. }), "{missing}");
        assert!(missing.to_string().contains("subject 'a' version 1"), "{missing}");
        assert!(matches!(add(&mut state, "b", avro(B)), Err(RegistryError::InvalidSchema(_))), "t.A is unknown");
        assert_eq!(add(&mut state, "a", avro(A)).unwrap(), 1);
        assert_eq!(add(&mut state, "b", referencing(B, "a", -1)).unwrap(), 2);
        assert_eq!(state.schema(2).unwrap().references[0].version, 1, "latest resolved and stored");
        assert_eq!(add(&mut state, "c", referencing(B, "a", 1)).unwrap(), 2, "same schema, same id");
        assert!(matches!(add(&mut state, "a", referencing(A, "a", 3)), Err(RegistryError::MissingReference { .. })));
        assert_eq!(state.referenced_by("a", 1), vec![2]);
        assert!(state.referenced_by("a", 2).is_empty());
    }

    #[test]
    fn references_of_references_are_given_to_the_parser_once_each() {
        let mut state = State::default();
        add(&mut state, "a", avro(A)).unwrap();
        add(&mut state, "b", referencing(B, "a", 1)).unwrap();
        let c = r#"{"type":"record","name":"C","namespace":"t",
                    "fields":[{"name":"b","type":"t.B"},{"name":"a","type":"t.A"}]}"#;
        let both = vec![
            Reference { name: "t.B".into(), subject: "b".into(), version: 1 },
            Reference { name: "t.A".into(), subject: "a".into(), version: 1 },
        ];
        let only_b = StoredSchema { references: both[..1].to_vec(), ..avro(c) };
        assert_eq!(add(&mut state, "c", only_b).unwrap(), 3, "t.A comes through t.B");
        let diamond = StoredSchema { references: both, ..avro(c) };
        assert_eq!(add(&mut state, "d", diamond).unwrap(), 4, "t.A reached twice is given once");
        let names: Vec<&str> =
            state.dependencies(&state.schema(4).unwrap().references).unwrap().iter().map(|d| d.name).collect();
        assert_eq!(names, vec!["t.A", "t.B"], "a reference's own references come first");
    }

    #[test]
    fn a_referenced_subject_cannot_be_deleted_until_its_users_are() {
        let mut state = State::default();
        add(&mut state, "a", avro(A)).unwrap();
        add(&mut state, "b", referencing(B, "a", 1)).unwrap();
        let refused = state.delete_subject("a").unwrap_err();
        assert_eq!(refused.status_and_code(), (422, 42206));
        assert_eq!(state.delete_subject("b").unwrap(), vec![1]);
        assert!(state.referenced_by("a", 1).is_empty(), "only registered schemas count");
        assert_eq!(state.delete_subject("a").unwrap(), vec![1]);
        assert!(matches!(state.delete_subject("a"), Err(RegistryError::SubjectNotFound(_))));
    }

    #[test]
    fn deleted_versions_are_gone_but_their_numbers_are_not_reused() {
        let mut state = State::default();
        let a2 = r#"{"type":"record","name":"A","namespace":"t","fields":[]}"#;
        add(&mut state, "a", avro(A)).unwrap();
        add(&mut state, "a", avro(a2)).unwrap();
        add(&mut state, "b", referencing(B, "a", 1)).unwrap();
        assert_eq!(state.delete_version("a", "1").unwrap_err().status_and_code(), (422, 42206));
        assert_eq!(state.delete_version("a", "latest").unwrap(), 2);
        assert!(matches!(state.version("a", "2"), Err(RegistryError::VersionNotFound(_))));
        assert_eq!(state.version("a", "latest").unwrap(), (1, 1));
        assert!(matches!(add(&mut state, "c", referencing(B, "a", 2)), Err(RegistryError::MissingReference { .. })));
        assert_eq!(add(&mut state, "a", avro(a2)).unwrap(), 2, "the schema keeps its ID");
        assert_eq!(state.versions("a").unwrap(), vec![(1, 1), (3, 2)], "a new version number");
        let dir = std::env::temp_dir().join(format!("push-cache-registry-deleted-{}", std::process::id()));
        state.save(&dir.join("r.json")).unwrap();
        let loaded = State::load(&dir.join("r.json")).unwrap();
        assert_eq!(loaded.versions("a").unwrap(), vec![(1, 1), (3, 2)], "deleted versions survive a restart");
        let _ = std::fs::remove_dir_all(dir);
        state.delete_subject("b").unwrap();
        state.delete_version("a", "1").unwrap();
        state.delete_version("a", "3").unwrap();
        assert!(matches!(state.versions("a"), Err(RegistryError::SubjectNotFound(_))));
        assert_eq!(state.subject_names().count(), 0);
    }

    #[test]
    fn data_files_keep_types_and_references_and_read_old_plain_strings() {
        let mut state = State::default();
        add(&mut state, "a", avro(A)).unwrap();
        add(&mut state, "b", referencing(B, "a", 1)).unwrap();
        let json = StoredSchema { text: r#"{"type":"object"}"#.into(), kind: SchemaType::Json, references: vec![] };
        add(&mut state, "j", json.clone()).unwrap();
        let text = serde_json::to_value(&state).unwrap();
        assert_eq!(text["schemas"][0], serde_json::json!(A), "plain Avro stays a plain string");
        assert_eq!(text["schemas"][2]["schemaType"], "JSON");
        let dir = std::env::temp_dir().join(format!("push-cache-registry-state-{}", std::process::id()));
        let path = dir.join("r.json");
        state.save(&path).unwrap();
        let loaded = State::load(&path).unwrap();
        assert_eq!(loaded.schema(2).unwrap(), state.schema(2).unwrap());
        assert_eq!(loaded.schema(3).unwrap(), &json);
        assert_eq!(loaded.keys, state.keys);
        std::fs::write(&path, format!(r#"{{"schemas":[{}],"subjects":{{"s":[1]}}}}"#, serde_json::json!(A))).unwrap();
        assert_eq!(State::load(&path).unwrap().schema(1).unwrap(), &avro(A), "files from before types");
        let _ = std::fs::remove_dir_all(dir);
    }
}
