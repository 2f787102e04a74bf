//! Every backend of `transport::registry()` by URL: a session set up from configuration alone,
//! frames sent through a `FrameSink` and received through a `FrameStream`.

use futures_core::Stream;
use futures_sink::Sink;
use std::future::poll_fn;
use std::pin::pin;
use transport::{Frame, FrameSink, FrameStream, TransportConfig};

fn urls() -> Vec<String> {
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    vec![
        format!("mem://facade-test-{pid}"),
        format!("shm://{}/facade-test-{pid}.sock", dir.display()),
        format!(
            "hub://{}/facade-test-hub-{pid}.sock?max_peers=2",
            dir.display()
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compiled_in_backend_carries_frames_through_the_adapters() {
    let registry = transport::registry();
    for url in urls() {
        let config: TransportConfig = url.parse().unwrap();
        assert!(
            registry.backends().any(|b| b == config.backend),
            "{url}: backend missing from {registry:?}"
        );
        let listener = registry.listen(&config).await.unwrap();
        let peer_config = listener.connect_config();
        let (client, server) = tokio::join!(registry.connect(&peer_config), listener.accept());
        let (client, server) = (client.unwrap(), server.unwrap());

        let send = async {
            let mut sink = pin!(FrameSink::new(&client));
            for i in 0..500u64 {
                poll_fn(|cx| sink.as_mut().poll_ready(cx)).await.unwrap();
                let payload = vec![i as u8; (i as usize * 37) % 3000];
                sink.as_mut()
                    .start_send(Frame::new(payload).msg_id(i))
                    .unwrap();
            }
            poll_fn(|cx| sink.as_mut().poll_close(cx)).await.unwrap();
        };
        let receive = async {
            let mut frames = pin!(FrameStream::new(&server));
            let mut next = 0u64;
            while let Some(frame) = poll_fn(|cx| frames.as_mut().poll_next(cx)).await {
                let frame = frame.unwrap();
                assert_eq!(frame.header.msg_id, next, "{url}");
                assert_eq!(
                    frame.bytes(),
                    vec![next as u8; (next as usize * 37) % 3000],
                    "{url}"
                );
                next += 1;
            }
            next
        };
        let ((), received) = tokio::join!(send, receive);
        assert_eq!(received, 500, "{url}: the stream ended early");
    }
}
