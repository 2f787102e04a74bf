//! The `shm` backend chosen by configuration through the registry.

use transport_api::{Frame, Registry, Transport, TransportConfig, TransportError};
use transport_shm::ShmFactory;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_by_config_listens_and_connects() {
    let path = std::env::temp_dir().join(format!("tshm-factory-{}.sock", std::process::id()));
    let cfg: TransportConfig = format!(
        "shm://{}?ring=64&spin_us=0&classes=256x16,65536x4&read_only_payloads=true",
        path.display()
    )
    .parse()
    .unwrap();
    let reg = Registry::new().with(ShmFactory);
    let listener = reg.listen(&cfg).await.unwrap();
    let peer_cfg = listener.connect_config();
    assert_eq!(peer_cfg.backend, "shm");
    let (server, client) = tokio::try_join!(listener.accept(), reg.connect(&peer_cfg)).unwrap();
    assert_eq!(
        server.max_payload(),
        65536,
        "the listener's classes decide the largest payload"
    );
    assert_eq!(
        client.max_payload(),
        65536,
        "the connector adopts the segment's geometry"
    );
    client
        .send(Frame::new(vec![3u8; 5000]).msg_id(1))
        .await
        .unwrap();
    let f = server.recv().await.unwrap();
    assert_eq!((f.header.msg_id, f.bytes()), (1, &[3u8; 5000][..]));
    assert!(matches!(
        client.send(Frame::new(vec![0u8; 65537])).await,
        Err(TransportError::PayloadTooLarge {
            len: 65537,
            max: 65536
        })
    ));
}

#[tokio::test]
async fn bad_shm_configs_are_explained() {
    let reg = Registry::new().with(ShmFactory);
    for (url, needle) in [
        ("shm:///tmp/x.sock?rign=4", "rign"),
        ("shm:///tmp/x.sock?ring=3", "ring"),
        ("shm:///tmp/x.sock?classes=256x", "256x"),
        ("shm:///tmp/x.sock?classes=300x4", "300"),
        (
            "shm:///tmp/x.sock?read_only_payloads=maybe",
            "read_only_payloads",
        ),
    ] {
        let e = reg
            .listen(&url.parse().unwrap())
            .await
            .err()
            .expect(url)
            .to_string();
        assert!(e.contains(needle), "{url}: {e}");
    }
    let e = reg
        .connect(&"shm:///nonexistent/dir/x.sock".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("/nonexistent/dir/x.sock"), "{e}");
}
