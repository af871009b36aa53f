//! The ghz configurations in `tests/load/` stay true to the API: each one
//! parses, names a call that exists in the compiled descriptor set, points
//! at a proto file that exists and declares that service, and sends only
//! fields (and enum values) the call's input message has. A renamed RPC or
//! field breaks this test instead of a load test run months later. Each
//! main call has one closed-loop configuration; a steady-rate one (`rps`)
//! may drive the same call beside it.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use gdpr_intake::proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
use serde_json::Value;

/// Every call the load tests must cover, one configuration each.
const CALLS: &[&str] = &[
    "gdpr.intake.v1.DataSubjectRequestService.SubmitDataSubjectRequest",
    "gdpr.intake.v1.DataSubjectRequestService.GetDataSubjectRequest",
    "gdpr.intake.v1.DataSubjectRequestService.ListDataSubjectRequests",
    "gdpr.intake.v1.ProcessorTaskService.ClaimTasks",
    "gdpr.intake.v1.ProcessorTaskService.CompleteTask",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Each configuration file with its parsed content.
fn configs() -> Vec<(String, Value)> {
    let dir = repo().join("tests/load");
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).expect("tests/load exists") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = fs::read_to_string(&path).expect("readable config");
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            found.push((name, value));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The descriptor set's messages and enums by full name (with the leading
/// dot, as field type names have it), and its services' methods.
struct Descriptors {
    files: FileDescriptorSet,
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, EnumDescriptorProto>,
}

impl Descriptors {
    fn load() -> Self {
        let files = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("a descriptor set");
        let mut messages = HashMap::new();
        let mut enums = HashMap::new();
        for file in &files.file {
            let prefix = format!(".{}", file.package());
            for e in &file.enum_type {
                enums.insert(format!("{prefix}.{}", e.name()), e.clone());
            }
            for m in &file.message_type {
                collect(&prefix, m, &mut messages, &mut enums);
            }
        }
        Self {
            files,
            messages,
            enums,
        }
    }

    /// The input type of `service`'s `method`, if both exist.
    fn input_of(&self, service: &str, method: &str) -> Option<String> {
        self.files.file.iter().find_map(|file| {
            file.service.iter().find_map(|s| {
                let full = format!("{}.{}", file.package(), s.name());
                (full == service)
                    .then(|| s.method.iter().find(|m| m.name() == method))
                    .flatten()
                    .map(|m| m.input_type().to_owned())
            })
        })
    }

    /// Whether the file `name` (relative to the import path) declares
    /// `service`.
    fn file_declares(&self, name: &str, service: &str) -> bool {
        self.files.file.iter().any(|file| {
            file.name() == name
                && file
                    .service
                    .iter()
                    .any(|s| format!("{}.{}", file.package(), s.name()) == service)
        })
    }

    /// Checks `data` against message `type_name`, collecting problems.
    fn check_message(&self, type_name: &str, data: &Value, at: &str, problems: &mut Vec<String>) {
        let Some(message) = self.messages.get(type_name) else {
            problems.push(format!(
                "{at}: message {type_name} is not in the descriptor set"
            ));
            return;
        };
        let Some(object) = data.as_object() else {
            problems.push(format!("{at}: {type_name} must be a JSON object"));
            return;
        };
        for (key, value) in object {
            // ghz reads data as protobuf JSON, which takes the proto name
            // and the lowerCamel JSON name alike.
            let field = message
                .field
                .iter()
                .find(|f| f.name() == key || f.json_name() == key);
            let Some(field) = field else {
                problems.push(format!("{at}: {type_name} has no field `{key}`"));
                continue;
            };
            let path = format!("{at}.{key}");
            let values: Vec<&Value> = if field.label() == Label::Repeated {
                value
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default()
            } else {
                vec![value]
            };
            for value in values {
                self.check_field(field.r#type(), field.type_name(), value, &path, problems);
            }
        }
    }

    fn check_field(
        &self,
        kind: Type,
        type_name: &str,
        value: &Value,
        at: &str,
        problems: &mut Vec<String>,
    ) {
        match kind {
            Type::Enum => {
                let Some(e) = self.enums.get(type_name) else {
                    problems.push(format!(
                        "{at}: enum {type_name} is not in the descriptor set"
                    ));
                    return;
                };
                if let Some(name) = value.as_str()
                    && !e.value.iter().any(|v| v.name() == name)
                {
                    problems.push(format!("{at}: {type_name} has no value {name}"));
                }
            }
            // Well-known types have their own JSON forms ("60s", RFC 3339);
            // map entries are checked no deeper.
            Type::Message
                if type_name.starts_with(".google.protobuf.")
                    || self
                        .messages
                        .get(type_name)
                        .is_some_and(|m| m.options.as_ref().is_some_and(|o| o.map_entry())) => {}
            Type::Message => self.check_message(type_name, value, at, problems),
            _ => {}
        }
    }
}

fn collect(
    prefix: &str,
    message: &DescriptorProto,
    messages: &mut HashMap<String, DescriptorProto>,
    enums: &mut HashMap<String, EnumDescriptorProto>,
) {
    let full = format!("{prefix}.{}", message.name());
    for e in &message.enum_type {
        enums.insert(format!("{full}.{}", e.name()), e.clone());
    }
    for nested in &message.nested_type {
        collect(&full, nested, messages, enums);
    }
    messages.insert(full, message.clone());
}

/// `package.Service.Method` or `package.Service/Method`.
fn split_call(call: &str) -> Option<(&str, &str)> {
    let call = call.strip_prefix('.').unwrap_or(call);
    match call.split_once('/') {
        Some(parts) => Some(parts),
        None => call.rsplit_once('.'),
    }
}

/// The call a configuration drives, as `package.Service.Method`.
fn call_of(name: &str, config: &Value) -> String {
    let call = config["call"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no call"));
    let (service, method) =
        split_call(call).unwrap_or_else(|| panic!("{name}: malformed call {call}"));
    format!("{service}.{method}")
}

#[test]
fn every_main_call_has_one_closed_loop_configuration() {
    let calls: Vec<String> = configs()
        .iter()
        .filter(|(_, c)| c.get("rps").is_none())
        .map(|(name, c)| call_of(name, c))
        .collect();
    let unique: BTreeSet<&String> = calls.iter().collect();
    assert_eq!(
        unique.len(),
        calls.len(),
        "two closed-loop configurations drive one call"
    );
    for expected in CALLS {
        assert!(
            calls.iter().any(|c| c == expected),
            "no configuration drives {expected}"
        );
    }
}

#[test]
fn the_steady_submit_holds_1000_a_second() {
    let configs = configs();
    let (name, steady) = configs
        .iter()
        .find(|(name, _)| name == "submit_steady.json")
        .expect("tests/load/submit_steady.json");
    assert_eq!(
        call_of(name, steady),
        "gdpr.intake.v1.DataSubjectRequestService.SubmitDataSubjectRequest"
    );
    // ghz holds the rate with at most `concurrency` calls in flight.
    assert_eq!(steady["rps"], 1000);
    assert_eq!(steady["concurrency"], 64);
    assert_eq!(steady["connections"], 4);
    assert_eq!(steady["duration"], "30s");
}

#[test]
fn configurations_name_real_calls_files_and_fields() {
    let descriptors = Descriptors::load();
    let configs = configs();
    assert!(!configs.is_empty(), "no configuration in tests/load");
    let mut problems = Vec::new();
    for (name, config) in &configs {
        let call = config["call"].as_str().unwrap_or_default();
        let Some((service, method)) = split_call(call) else {
            problems.push(format!(
                "{name}: call `{call}` is not package.Service.Method"
            ));
            continue;
        };
        let Some(input) = descriptors.input_of(service, method) else {
            problems.push(format!("{name}: {service} has no method {method}"));
            continue;
        };

        let proto = config["proto"].as_str().unwrap_or_default();
        if !repo().join(proto).is_file() {
            problems.push(format!("{name}: proto file {proto} does not exist"));
        }
        let imports: Vec<&str> = config["import-paths"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if imports.is_empty() {
            problems.push(format!("{name}: no import-paths"));
        }
        for dir in &imports {
            if !repo().join(dir).is_dir() {
                problems.push(format!("{name}: import path {dir} does not exist"));
            }
        }
        // The proto file, named as its import path sees it, must be the one
        // that declares the service.
        let declared = imports.iter().any(|dir| {
            Path::new(proto)
                .strip_prefix(dir)
                .ok()
                .and_then(Path::to_str)
                .is_some_and(|relative| descriptors.file_declares(relative, service))
        });
        if !declared {
            problems.push(format!("{name}: {proto} does not declare {service}"));
        }

        if config["insecure"] != Value::Bool(true) {
            problems.push(format!("{name}: must be plaintext (\"insecure\": true)"));
        }
        let authorization = config["metadata"]["authorization"]
            .as_str()
            .unwrap_or_default();
        let from_env = authorization
            .strip_prefix("Bearer {{env `")
            .and_then(|rest| rest.strip_suffix("`}}"))
            .is_some_and(|var| {
                var.starts_with("GDPR_INTAKE_")
                    && var.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            });
        if !from_env {
            problems.push(format!(
                "{name}: authorization must be \"Bearer {{{{env `GDPR_INTAKE_…`}}}}\", not `{authorization}`"
            ));
        }
        descriptors.check_message(&input, &config["data"], name, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn submissions_get_a_new_request_id_per_call() {
    let configs = configs();
    let submits: Vec<&(String, Value)> = configs
        .iter()
        .filter(|(_, c)| {
            c["call"]
                .as_str()
                .is_some_and(|c| c.ends_with("SubmitDataSubjectRequest"))
        })
        .collect();
    assert!(submits.len() >= 2, "submit.json and submit_steady.json");
    // ghz renders the template for every call; a fixed id would make every
    // call after the first a replay, which measures something else.
    for (name, submit) in submits {
        assert_eq!(submit["data"]["request_id"], "{{newUUID}}", "{name}");
    }
}

#[test]
fn the_checker_catches_what_it_is_for() {
    let descriptors = Descriptors::load();
    let input = descriptors
        .input_of(
            "gdpr.intake.v1.DataSubjectRequestService",
            "SubmitDataSubjectRequest",
        )
        .expect("submit exists");
    let mut problems = Vec::new();
    let bad = serde_json::json!({
        "request_id": "x",
        "kind": "REQUEST_TYPE_ACCESS",
        "type": "REQUEST_TYPE_NOPE",
        "subject": { "externalId": "ok", "birthday": "1985-12-10" },
        "receivedAt": "2026-01-01T00:00:00Z"
    });
    descriptors.check_message(&input, &bad, "bad", &mut problems);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        descriptors
            .input_of("gdpr.intake.v1.DataSubjectRequestService", "Nope")
            .is_none()
    );
    assert_eq!(
        split_call("gdpr.intake.v1.ProcessorTaskService/ClaimTasks"),
        Some(("gdpr.intake.v1.ProcessorTaskService", "ClaimTasks"))
    );
}
