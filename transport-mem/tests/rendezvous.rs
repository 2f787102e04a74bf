//! Name-based rendezvous and the configuration factory.

use transport_api::{Frame, Registry, Transport, TransportConfig, TransportError};
use transport_mem::{MemConfig, MemFactory, MemListener, connect};

#[tokio::test]
async fn factory_listens_and_connects_by_config() {
    let reg = Registry::new().with(MemFactory);
    let cfg: TransportConfig = "mem://factory-test?capacity=4&max_payload=100"
        .parse()
        .unwrap();
    let listener = reg.listen(&cfg).await.unwrap();
    let client = reg.connect(&listener.connect_config()).await.unwrap();
    let server = listener.accept().await.unwrap();
    assert_eq!(server.max_payload(), 100);
    client.send(Frame::new("ping").msg_id(9)).await.unwrap();
    let f = server.recv().await.unwrap();
    assert_eq!((f.header.msg_id, f.bytes()), (9, &b"ping"[..]));
    assert!(matches!(
        client.send(Frame::new(vec![0u8; 101])).await,
        Err(TransportError::PayloadTooLarge { len: 101, max: 100 })
    ));
}

#[tokio::test]
async fn config_errors_are_explained() {
    let reg = Registry::new().with(MemFactory);
    let e = reg
        .listen(&"mem://x?capcity=4".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("capcity"), "{e}");
    let e = reg
        .listen(&"mem://x?capacity=0".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("capacity"), "{e}");
    for (url, words) in [
        (
            "mem://x?capacity=18446744073709551615",
            &["capacity", "18446744073709551615", "1..=1048576"][..],
        ),
        (
            "mem://x?max_payload=4294967296",
            &["max_payload", "0..=1073741824"],
        ),
        ("mem://x?capacity_bytes=0", &["capacity_bytes", "1..="]),
        ("mem://?capacity=4", &["empty address"]),
    ] {
        let e = reg.listen(&url.parse().unwrap()).await.err().unwrap();
        let text = e.to_string();
        assert!(words.iter().all(|w| text.contains(w)), "{url}: {text}");
        assert!(matches!(e, TransportError::Config(_)), "{url}: {e:?}");
    }
    let e = reg.connect(&"mem://".parse().unwrap()).await.err().unwrap();
    assert!(e.to_string().contains("empty address"), "{e}");
    let e = reg
        .connect(&"tcp://x".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("no backend named `tcp`") && e.to_string().contains("mem"),
        "{e}"
    );
}

#[tokio::test]
async fn names_are_exclusive_and_freed_on_drop() {
    let l = MemListener::bind("exclusive", MemConfig::default()).unwrap();
    assert!(MemListener::bind("exclusive", MemConfig::default()).is_err());
    drop(l);
    let l = MemListener::bind("exclusive", MemConfig::default()).unwrap();
    let c = connect("exclusive").unwrap();
    let s = l.accept().await.unwrap();
    c.close();
    assert!(matches!(s.recv().await, Err(TransportError::Closed)));
    drop(l);
    assert!(connect("exclusive").is_err());
    assert!(connect("never-bound").is_err());
}
