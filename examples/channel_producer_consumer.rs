//! The guide's producer/consumer, rewritten as two green threads and a
//! rendezvous channel each way instead of a generator.

use stackful::sync::channel;

/// Runs this example (the tour calls it too).
pub fn demo() {
    stackful::run(|| {
        let (to_consumer, requests) = channel::<u32>(0);
        let (to_producer, replies) = channel::<&'static str>(0);
        let consumer = stackful::spawn(move || {
            for n in requests.iter() {
                println!("  [CONSUMER] Consuming {n}...");
                to_producer
                    .send("200 OK")
                    .expect("the producer waits for the reply");
            }
            println!("  [CONSUMER] channel closed, done");
        });
        for n in 1..=5 {
            println!("  [PRODUCER] Producing {n}...");
            to_consumer.send(n).expect("the consumer is running");
            println!(
                "  [PRODUCER] Consumer return: {}",
                replies.recv().expect("a reply")
            );
        }
        drop(to_consumer); // Python's c.close()
        consumer.join().expect("the consumer finished");
    });
}

#[allow(dead_code)]
fn main() {
    demo();
}
