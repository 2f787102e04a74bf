//! The echo example over every URL form the workspace supports, server and client in two
//! processes (one for the in-process `mem`), and its `--config FILE` option.

mod support;

use support::{describe, in_process, run, serve_and_connect, temp_path, urls};

const ECHO: &str = env!("CARGO_BIN_EXE_echo");

#[tokio::test]
async fn echo_runs_over_every_url_form() {
    for url in urls("echo") {
        if in_process(&url) {
            let out = run(ECHO, &[&url, "300"]).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{url}: {}", describe(&out));
            assert!(
                stdout.contains("client: 300 round trips over `mem`")
                    && stdout.contains("served 300 requests"),
                "{url}: {}",
                describe(&out)
            );
            continue;
        }
        let (server, client) = serve_and_connect(ECHO, &url, "connect", &["300"]).await;
        assert!(
            client.contains("client: 300 round trips over"),
            "{url}: client said {client}"
        );
        assert!(
            server.contains("server: served 300 requests"),
            "{url}: server said {server}"
        );
    }
}

#[tokio::test]
async fn echo_without_a_role_starts_its_client_as_a_second_process() {
    let url = format!("hub://{}", temp_path("echo-both.sock").display());
    let out = run(ECHO, &[&url, "50"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout.contains("client: 50 round trips") && stdout.contains("served 50 requests"),
        "{}",
        describe(&out)
    );
}

/// Writes `text` to a configuration file of this test.
fn config_file(tag: &str, text: &str) -> String {
    let path = temp_path(&format!("{tag}.toml"));
    std::fs::write(&path, text).expect("writing the configuration file");
    path.display().to_string()
}

#[tokio::test]
async fn echo_reads_its_backend_and_options_from_a_toml_file() {
    let socket = temp_path("echo-config.sock");
    let file = config_file(
        "good",
        &format!(
            "backend = \"hub\"\naddress = \"{}\"\n\n[options]\nmax_peers = 2\nring = 64\n",
            socket.display()
        ),
    );
    let out = run(ECHO, &["--config", &file, "40"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout.contains("listening with `hub://") && stdout.contains("max_peers=2&ring=64`"),
        "{}",
        describe(&out)
    );
    assert!(stdout.contains("served 40 requests"), "{}", describe(&out));
}

#[tokio::test]
async fn config_file_errors_name_the_key_and_the_file() {
    let socket = temp_path("echo-bad.sock");
    let cases = [
        (
            "unknown-key",
            "backend = \"mem\"\nadress = \"x\"\n".to_string(),
            "adress",
            "is unknown",
        ),
        (
            "wrong-type",
            "backend = 3\n".to_string(),
            "backend",
            "must be a string",
        ),
        (
            "option-type",
            "backend = \"mem\"\naddress = \"x\"\n[options]\ncapacity = 1.5\n".to_string(),
            "options.capacity",
            "found float",
        ),
        // Options the backend itself refuses: an unknown one, a value of the wrong type.
        (
            "unknown-option",
            format!(
                "backend = \"shm\"\naddress = \"{}\"\n[options]\nrign = 8\n",
                socket.display()
            ),
            "rign",
            "unknown option",
        ),
        (
            "option-value",
            format!(
                "backend = \"shm\"\naddress = \"{}\"\n[options]\nring = \"many\"\n",
                socket.display()
            ),
            "ring",
            "is not a u32",
        ),
    ];
    for (tag, text, key, why) in cases {
        let file = config_file(tag, &text);
        let out = run(ECHO, &["--config", &file, "10"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tag}: {}", describe(&out));
        assert!(
            stderr.contains(&file) && stderr.contains(&format!("`{key}`")) && stderr.contains(why),
            "{tag}: the error does not name {key}, {file} and `{why}`: {}",
            describe(&out)
        );
        assert_eq!(stderr.lines().count(), 1, "{tag}: not one line: {stderr}");
    }
    let missing = temp_path("no-such.toml").display().to_string();
    let out = run(ECHO, &["--config", &missing]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&missing),
        "{}",
        describe(&out)
    );
}
