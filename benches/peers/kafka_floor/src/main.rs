//! The Kafka floor and the data tools of scripts/bench_kafka.py, with rskafka:
//!
//! * `kafka-floor copy BROKER IN OUT`: copies every message of topic IN present at
//!   start to topic OUT (same partition index), one task per partition, each a loop of
//!   one fetch then one produce of what it returned. Prints the messages copied.
//! * `kafka-floor produce BROKER TOPIC PARTITIONS N BYTES`: creates TOPIC and writes N
//!   messages of BYTES bytes, round robin over its partitions.
//! * `kafka-floor create BROKER TOPIC PARTITIONS`, `delete BROKER TOPIC`,
//!   `count BROKER TOPIC` (messages, from the fetch high watermarks).
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let client = ClientBuilder::new(vec![a[2].clone()]).build().await.expect("connect");
    match a[1].as_str() {
        "copy" => copy(client, a[3].clone(), a[4].clone()).await,
        "create" => {
            let c = client.controller_client().unwrap();
            c.create_topic(&a[3], a[4].parse().unwrap(), 1, 5000).await.unwrap();
        }
        "delete" => {
            let c = client.controller_client().unwrap();
            c.delete_topic(&a[3], 5000).await.unwrap();
        }
        "count" => {
            let topics = client.list_topics().await.unwrap();
            let t = topics.iter().find(|t| t.name == a[3]).expect("topic exists");
            let mut n = 0;
            for &p in &t.partitions {
                let pc = client.partition_client(&a[3], p, UnknownTopicHandling::Retry).await.unwrap();
                n += pc.fetch_records(0, 1..2, 1).await.unwrap().1;
            }
            println!("{n}");
        }
        "produce" => {
            let (topic, parts, n, bytes): (&str, i32, usize, usize) =
                (&a[3], a[4].parse().unwrap(), a[5].parse().unwrap(), a[6].parse().unwrap());
            client.controller_client().unwrap().create_topic(topic, parts, 1, 5000).await.unwrap();
            for p in 0..parts {
                let pc = client.partition_client(topic, p, UnknownTopicHandling::Retry).await.unwrap();
                let mine: Vec<usize> = (0..n).filter(|i| *i as i32 % parts == p).collect();
                for chunk in mine.chunks(5000) {
                    let recs = chunk
                        .iter()
                        .map(|i| {
                            let mut v = format!("{i:012}").into_bytes();
                            v.resize(bytes, b'x');
                            Record { key: None, value: Some(v), headers: Default::default(), timestamp: chrono::Utc::now() }
                        })
                        .collect();
                    pc.produce(recs, Compression::NoCompression).await.unwrap();
                }
            }
        }
        other => panic!("unknown command {other}"),
    }
}

async fn copy(client: rskafka::client::Client, inp: String, out: String) {
    let topics = client.list_topics().await.expect("list");
    let parts = topics.iter().find(|t| t.name == inp).expect("IN exists").partitions.clone();
    let client = std::sync::Arc::new(client);
    let mut tasks = Vec::new();
    for p in parts {
        let (client, inp, out) = (client.clone(), inp.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            let src = client.partition_client(&inp, p, UnknownTopicHandling::Retry).await.unwrap();
            let dst = client.partition_client(&out, p, UnknownTopicHandling::Retry).await.unwrap();
            let (_, end) = src.fetch_records(0, 1..2, 1).await.unwrap();
            let mut offset = 0;
            let mut n = 0u64;
            while offset < end {
                let (recs, _) = src.fetch_records(offset, 1..(4 << 20), 1).await.unwrap();
                let recs: Vec<Record> = recs
                    .into_iter()
                    .filter(|r| r.offset < end)
                    .map(|r| {
                        offset = r.offset + 1;
                        r.record
                    })
                    .collect();
                n += recs.len() as u64;
                for chunk in recs.chunks(5000) {
                    dst.produce(chunk.to_vec(), Compression::NoCompression).await.unwrap();
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    println!("{total}");
}
