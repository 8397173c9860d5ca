//! `gatehouse check-config` and `gatehouse serve` on valid and invalid
//! configs: every error names its field path, and a bad config never gets
//! as far as serving.

#![allow(clippy::unwrap_used)]

use gatehouse_test_support::{Gateway, workspace_root};

/// Exit status of `check-config` when the config has errors.
const INVALID_CONFIG_EXIT: i32 = 2;

const VALID: &str = r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
limits:
  header_read_timeout: 10s
  idle_timeout: 60s
  max_header_bytes: 60KiB
  max_headers: 100
  max_connections: 10000
  max_concurrent_streams: 256
upstreams:
  echo:
    protocol: http1
    endpoints: ["127.0.0.1:7001", "localhost:7001"]
    balance: round_robin
    connect_timeout: 1s
  echo-grpc:
    protocol: grpc
    endpoints: ["127.0.0.1:7001"]
    balance: p2c
routes:
  - name: echo-http
    match: { path_prefix: /echo }
    upstream: echo
    timeout: 5s
    max_body_bytes: 10MiB
  - name: exact
    match: { path: /exact }
    upstream: echo
  - name: by-host
    match: { host: example.com, path_prefix: /api }
    upstream: echo
  - name: echo-grpc
    match: { grpc_service: echo.v1.Echo }
    upstream: echo-grpc
"#;

/// A bad config and the text every report of it must contain: the field
/// path and the offending key or value.
struct Case {
    what: &'static str,
    yaml: &'static str,
    expect: &'static [&'static str],
}

const BAD: &[Case] = &[
    Case {
        what: "unknown field",
        yaml: r#"
listeners: { public: 127.0.0.1:0, admin: 127.0.0.1:0 }
upstreams:
  echo:
    protocol: http1
    endpoints: ["127.0.0.1:7001"]
    balanse: p2c
routes:
  - { name: a, match: { path_prefix: / }, upstream: echo }
"#,
        expect: &["upstreams.echo", "balanse"],
    },
    Case {
        what: "route to a missing upstream",
        yaml: r#"
listeners: { public: 127.0.0.1:0, admin: 127.0.0.1:0 }
upstreams:
  echo: { protocol: http1, endpoints: ["127.0.0.1:7001"] }
routes:
  - { name: a, match: { path_prefix: /a }, upstream: echo }
  - { name: b, match: { path_prefix: /b }, upstream: nope }
"#,
        expect: &["routes[1].upstream", "nope"],
    },
    Case {
        what: "duplicate route name",
        yaml: r#"
listeners: { public: 127.0.0.1:0, admin: 127.0.0.1:0 }
upstreams:
  echo: { protocol: http1, endpoints: ["127.0.0.1:7001"] }
routes:
  - { name: a, match: { path_prefix: /a }, upstream: echo }
  - { name: b, match: { path_prefix: /b }, upstream: echo }
  - { name: a, match: { path_prefix: /c }, upstream: echo }
"#,
        expect: &["routes[2].name", "\"a\""],
    },
    Case {
        what: "unparsable address",
        yaml: r#"
listeners: { public: "127.0.0.1:not-a-port", admin: 127.0.0.1:0 }
upstreams:
  echo: { protocol: http1, endpoints: ["127.0.0.1:7001"] }
routes:
  - { name: a, match: { path_prefix: / }, upstream: echo }
"#,
        expect: &["listeners.public", "127.0.0.1:not-a-port"],
    },
    Case {
        what: "empty endpoint list",
        yaml: r#"
listeners: { public: 127.0.0.1:0, admin: 127.0.0.1:0 }
upstreams:
  echo: { protocol: http1, endpoints: [] }
routes:
  - { name: a, match: { path_prefix: / }, upstream: echo }
"#,
        expect: &["upstreams.echo.endpoints", "empty"],
    },
];

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_config_accepts_a_valid_config() {
    let output = Gateway::check_config(VALID);
    assert!(output.status.success(), "{}: {}", output.status, stderr_of(&output));
}

#[test]
fn check_config_accepts_the_shipped_example_configs() {
    let dir = workspace_root().join("examples");
    let examples: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    assert!(!examples.is_empty(), "no example config in {}", dir.display());
    for path in examples {
        let yaml = std::fs::read_to_string(&path).unwrap();
        let output = Gateway::check_config(&yaml);
        assert!(output.status.success(), "{}: {}: {}", path.display(), output.status, stderr_of(&output));
    }
}

#[test]
fn check_config_names_the_field_of_each_error() {
    for case in BAD {
        let output = Gateway::check_config(case.yaml);
        let stderr = stderr_of(&output);
        assert_eq!(
            output.status.code(),
            Some(INVALID_CONFIG_EXIT),
            "{}: exit status {}; stderr: {stderr}",
            case.what,
            output.status
        );
        // The message is on one line, with the path and the culprit together.
        assert!(
            stderr.lines().any(|line| case.expect.iter().all(|needle| line.contains(needle))),
            "{}: no stderr line contains all of {:?}:\n{stderr}",
            case.what,
            case.expect
        );
    }
}

#[test]
fn check_config_reports_every_error_at_once() {
    let yaml = r#"
listeners: { public: 127.0.0.1:0, admin: 127.0.0.1:0 }
upstreams:
  echo: { protocol: http1, endpoints: ["127.0.0.1:7001"] }
  empty: { protocol: http1, endpoints: [] }
routes:
  - { name: a, match: { path_prefix: /a }, upstream: echo }
  - { name: b, match: { path_prefix: /b }, upstream: nope }
  - { name: a, match: { path_prefix: /c }, upstream: echo }
"#;
    let output = Gateway::check_config(yaml);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(INVALID_CONFIG_EXIT), "{stderr}");
    for path in ["upstreams.empty.endpoints", "routes[1].upstream", "routes[2].name"] {
        assert_eq!(
            stderr.lines().filter(|line| line.contains(path)).count(),
            1,
            "expected one line naming {path}:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn serve_refuses_each_bad_config_before_listening() {
    for case in BAD {
        let error = Gateway::try_start(case.yaml).await.expect_err(case.what);
        let status =
            error.status.unwrap_or_else(|| panic!("{}: serve neither listened nor exited: {error}", case.what));
        assert!(!status.success(), "{}: serve exited with {status}", case.what);
        let stderr = error.stderr.join("\n");
        assert!(
            error.stderr.iter().any(|line| case.expect.iter().all(|needle| line.contains(needle))),
            "{}: no stderr line contains all of {:?}:\n{stderr}",
            case.what,
            case.expect
        );
    }
}
