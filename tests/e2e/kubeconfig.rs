//! `credcache kubeconfig`: the printed entry parses as a kubeconfig with the
//! exec plugin kubectl expects, `--merge` keeps the file's other entries
//! and a backup, merging twice changes nothing, and no daemon is started.
//! The entry's command, run the way kubectl runs it, prints an
//! ExecCredential.

use std::path::Path;

use crate::harness::{Sandbox, bin_dir};

/// Reads YAML into a JSON value (so assertions read like the other tests').
fn yaml(text: &str) -> serde_json::Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

fn exec_of(v: &serde_json::Value, user: &str) -> serde_json::Value {
    v["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == user)
        .unwrap_or_else(|| panic!("no user {user} in {v:#}"))["user"]["exec"]
        .clone()
}

#[test]
fn printed_entry_is_a_kubeconfig_with_the_exec_plugin() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("k");
    sb.write_config(&Sandbox::command_credential("prod-gke", &script));

    let out = sb.run(["kubeconfig", "prod-gke"]);
    let v = yaml(out.ok());
    assert_eq!(out.stderr, "", "a configured name: no warning");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["kind"], "Config");
    assert!(
        v.get("clusters").is_none(),
        "no cluster without --cluster-server"
    );
    let exec = exec_of(&v, "prod-gke");
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(exec["interactiveMode"], "Never");
    assert_eq!(exec["provideClusterInfo"], false);
    assert_eq!(
        exec["args"],
        serde_json::json!(["get", "prod-gke", "--format", "exec-credential"])
    );
    // The absolute path of the credcache that wrote it (see the module
    // docs of `commands::kubeconfig` for why).
    let command = exec["command"].as_str().unwrap();
    assert!(Path::new(command).is_absolute(), "{command}");
    assert_eq!(
        Path::new(command).canonicalize().unwrap(),
        bin_dir().join("credcache").canonicalize().unwrap()
    );
    assert!(
        sb.daemon_pid().is_none(),
        "kubeconfig never starts a daemon"
    );

    // What kubectl does with it: run the command with the args and read
    // an ExecCredential on stdout.
    let ec = sb
        .command("credcache")
        .args(
            exec["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap()),
        )
        .env(
            "KUBERNETES_EXEC_INFO",
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#,
        )
        .output()
        .unwrap();
    assert!(ec.status.success(), "{ec:?}");
    let ec: serde_json::Value = serde_json::from_slice(&ec.stdout).unwrap();
    assert_eq!(ec["kind"], "ExecCredential");
    assert_eq!(ec["status"]["token"], "tok-1-k");
}

#[test]
fn cluster_server_adds_a_cluster_and_a_context() {
    let sb = Sandbox::new();
    let out = sb.run([
        "kubeconfig",
        "prod-gke",
        "--cluster-server",
        "https://127.0.0.1:6443",
        "--command",
        "credcache",
    ]);
    let v = yaml(out.ok());
    assert!(
        out.stderr.contains("prod-gke is not configured"),
        "a hint, not an error: {out:?}"
    );
    assert_eq!(v["clusters"][0]["name"], "prod-gke");
    assert_eq!(
        v["clusters"][0]["cluster"]["server"],
        "https://127.0.0.1:6443"
    );
    assert_eq!(
        v["contexts"][0],
        serde_json::json!({"name": "prod-gke", "context": {"cluster": "prod-gke", "user": "prod-gke"}})
    );
    assert_eq!(v["current-context"], "prod-gke");
    assert_eq!(exec_of(&v, "prod-gke")["command"], "credcache");

    let bad = sb.run(["kubeconfig", "prod-gke", "--cluster-server", "not a url"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    let bad = sb.run(["kubeconfig", "no/such name"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

const EXISTING: &str = "\
apiVersion: v1
kind: Config
# a comment credcache cannot keep (the backup does)
clusters:
- name: corp
  cluster:
    server: https://corp.example:443
    certificate-authority-data: QUJDREVG
contexts:
- name: corp
  context:
    cluster: corp
    user: corp-admin
    namespace: tools
current-context: corp
preferences: {}
users:
- name: corp-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
- name: prod-gke
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
      provideClusterInfo: true
";

#[test]
fn merge_keeps_other_entries_writes_a_backup_and_is_idempotent() {
    let sb = Sandbox::new();
    let kube = sb.home.join(".kube");
    std::fs::create_dir_all(&kube).unwrap();
    let path = kube.join("config");
    std::fs::write(&path, EXISTING).unwrap();
    let before = yaml(EXISTING);

    let merge = |extra: &[&str]| {
        let mut args = vec!["kubeconfig", "prod-gke", "--merge"];
        let p = path.to_str().unwrap();
        args.push(p);
        args.extend_from_slice(extra);
        sb.run(&args)
    };
    let out = merge(&["--cluster-server", "https://127.0.0.1:6443"]);
    assert_eq!(out.ok(), "", "nothing on stdout when merging");
    assert!(out.stderr.contains("replaced user prod-gke"), "{out:?}");

    let backup = kube.join("config.bak");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), EXISTING);
    let after = yaml(&std::fs::read_to_string(&path).unwrap());

    // Every other entry, and the current context, are as they were.
    assert_eq!(after["clusters"][0], before["clusters"][0]);
    assert_eq!(after["contexts"][0], before["contexts"][0]);
    assert_eq!(after["users"][0], before["users"][0]);
    assert_eq!(after["preferences"], before["preferences"]);
    assert_eq!(after["current-context"], "corp");
    // Ours replaced the gcloud plugin in place and added a cluster/context.
    assert_eq!(after["users"].as_array().unwrap().len(), 2);
    let exec = exec_of(&after, "prod-gke");
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(exec["interactiveMode"], "Never");
    assert_eq!(
        after["clusters"][1]["cluster"]["server"],
        "https://127.0.0.1:6443"
    );
    assert_eq!(after["contexts"][1]["name"], "prod-gke");

    // Twice: the file is byte for byte the same and no second backup.
    let written = std::fs::read(&path).unwrap();
    let out = merge(&["--cluster-server", "https://127.0.0.1:6443"]);
    assert!(out.stderr.contains("already has user prod-gke"), "{out:?}");
    assert_eq!(std::fs::read(&path).unwrap(), written);
    let backups: Vec<_> = std::fs::read_dir(&kube)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".bak"))
        .collect();
    assert_eq!(backups, ["config.bak"]);
    assert!(
        sb.daemon_pid().is_none(),
        "kubeconfig never starts a daemon"
    );
}

#[test]
fn merge_into_a_missing_file_creates_it_and_refuses_what_is_not_a_kubeconfig() {
    let sb = Sandbox::new();
    let path = sb.home.join("new/kubeconfig");
    sb.run(["kubeconfig", "c1", "--merge", path.to_str().unwrap()])
        .ok();
    let v = yaml(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(v["kind"], "Config");
    assert_eq!(exec_of(&v, "c1")["args"][1], "c1");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let list = sb.home.join("list.yaml");
    std::fs::write(&list, "- just\n- a list\n").unwrap();
    let out = sb.run(["kubeconfig", "c1", "--merge", list.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("nothing was changed"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&list).unwrap(),
        "- just\n- a list\n"
    );
    assert!(!sb.home.join("list.yaml.bak").exists());
}
