//! The database connection over TLS: a private cluster with `ssl=on` and a certificate of a test
//! CA; planledger with `sslmode=verify-full` and that CA as `sslrootcert` serves, every one of
//! its connections is encrypted, and a URL trusting another CA is refused at start.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::cluster::PrivateCluster;
use crate::server::{Options, Server};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA and a server certificate it signed for 127.0.0.1, in a folder the server may read.
fn certificates(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("planledger-tls-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=planledger test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    // PostgreSQL reads its key only if its owner alone may.
    for (file, mode) in [("server.key", "600"), ("server.crt", "644")] {
        let path = dir.join(file);
        assert!(Command::new("chown").args(["postgres", path.to_str().unwrap()]).status().unwrap().success());
        assert!(Command::new("chmod").args([mode, path.to_str().unwrap()]).status().unwrap().success());
    }
    assert!(Command::new("chmod").args(["755", dir.to_str().unwrap()]).status().unwrap().success());
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_connection_is_encrypted_and_its_certificate_verified() {
    let certs = certificates("server");
    let settings = [
        "ssl=on".to_owned(),
        format!("ssl_cert_file={}", certs.join("server.crt").display()),
        format!("ssl_key_file={}", certs.join("server.key").display()),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let Some(cluster) = PrivateCluster::create("the TLS test", &settings) else { return };
    let verified = format!("{}?sslmode=verify-full&sslrootcert={}", cluster.url(), certs.join("ca.crt").display());
    let server = Server::start(&verified, &Options::default());
    let store = server.register("Encrypted").await;
    assert_eq!(server.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
    let (status, consumed) =
        server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "update_product"})).await;
    assert_eq!(status, 200, "{consumed}");
    let (plain, encrypted) = {
        let count = |ssl: bool| {
            cluster.sql(&format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name LIKE 'planledger%' AND s.ssl = {ssl}"
            ))
        };
        (count(false), count(true))
    };
    assert_eq!(plain, "0", "every connection of planledger is encrypted");
    assert_ne!(encrypted, "0", "planledger's connections are there, encrypted");
    drop(server);

    // A URL that trusts another CA: the server's certificate does not verify, nothing starts.
    let other = certificates("other");
    let untrusting = format!("{}?sslmode=verify-full&sslrootcert={}", cluster.url(), other.join("ca.crt").display());
    let output = crate::planledger(&untrusting, &["migrate"]);
    assert!(!output.status.success(), "a certificate of an untrusted CA was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not open the database"), "{stderr}");
    for dir in [certs, other] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
