//! The `tidal` binary as users run it: exit codes, stdout and stderr, golden.

use std::io::Write;
use std::process::{Command, Stdio};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn tidal(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidal"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidal runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

impl Run {
    fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

#[test]
fn render_the_seed_cpu_example() {
    let run = tidal(
        &["render", "-f", "examples/seed/sklearn-v2-iris.yaml"],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn render_both_seed_documents_from_stdin_as_json() {
    let text = format!(
        "{}---\n{}",
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/seed/sklearn-v2-iris.yaml"
        ))
        .unwrap(),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/seed/huggingface-fbopt.yaml"
        ))
        .unwrap()
    );
    let run = tidal(&["render", "-f", "-", "-o", "json"], Some(&text));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let kinds: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Service/sklearn-v2-iris-predictor",
            "Deployment/sklearn-v2-iris-predictor",
            "ScaledObject/sklearn-v2-iris-predictor",
            "Service/huggingface-fbopt-predictor",
            "Deployment/huggingface-fbopt-predictor",
            "ScaledObject/huggingface-fbopt-predictor"
        ]
    );
    let trigger = &list["items"][5]["spec"]["triggers"][0];
    assert_eq!(trigger["metadata"]["threshold"], "2");
}

#[test]
fn validate_the_seed() {
    let run = tidal(
        &[
            "validate",
            "-f",
            "examples/seed/sklearn-v2-iris.yaml",
            "-f",
            "examples/seed/huggingface-fbopt.yaml",
        ],
        None,
    );
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn validate_reports_every_error_of_every_document() {
    let text = r#"apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: bad
  annotations:
    serving.kserve.io/autoscalerClass: keda
spec:
  predictor:
    minReplicas: 6
    maxReplicas: 5
    model:
      modelFormat: {name: sklearn}
    autoScaling:
      metrics:
      - type: Resource
        resource: {name: cpu, target: {type: Utilization, averageUtilization: 120}}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: typo
spec:
  predictor:
    minReplica: 1
    model: {modelFormat: {name: sklearn}}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: fine
spec:
  predictor:
    model: {modelFormat: {name: sklearn}}
"#;
    let run = tidal(&["validate", "-f", "-"], Some(text));
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn bad_yaml_gets_line_and_column() {
    let run = tidal(
        &["validate", "-f", "-"],
        Some(
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: x\n   bad: indent\n",
        ),
    );
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn unknown_kinds_and_missing_files_are_errors() {
    let run = tidal(
        &["render", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"),
    );
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("unknown_kind", run.transcript());
    let run = tidal(&["render", "-f", "does/not/exist.yaml"], None);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("missing_file", run.transcript());
}

#[test]
fn custom_runtime_and_trigger_authentication_in_one_file() {
    let text = r#"apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: my-runtime
  namespace: team
spec:
  supportedModelFormats: [{name: custom, version: "1", autoSelect: true}]
  protocolVersions: [v2]
  containers:
  - name: kserve-container
    image: example/runtime:2
    args: ["--model={{.Name}}"]
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {name: prom-auth, namespace: team}
spec:
  secretTargetRef: [{parameter: bearerToken, name: prom-secret, key: token}]
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: custom
  namespace: team
  annotations: {serving.kserve.io/autoscalerClass: keda}
spec:
  predictor:
    model: {modelFormat: {name: custom}, protocolVersion: v2}
    minReplicas: 1
    maxReplicas: 2
    autoScaling:
      metrics:
      - type: External
        external:
          metric: {backend: prometheus, serverAddress: "http://prom:9090", query: "sum(rate(x[1m]))"}
          authenticationRef: {authModes: bearer, authenticationRef: {name: prom-auth}}
          target: {type: Value, value: "5"}
"#;
    let run = tidal(&["render", "-f", "-"], Some(text));
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn runtime_that_cannot_be_found_is_reported() {
    let run = tidal(
        &["render", "-f", "-"],
        Some(
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: m}\nspec:\n  predictor:\n    model: {modelFormat: {name: onnx}}\n",
        ),
    );
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.transcript());
}
