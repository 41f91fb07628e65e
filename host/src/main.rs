//! The `ogm` command-line trainer.

fn main() {
    println!("ogm: the trainer is not built yet");
}
