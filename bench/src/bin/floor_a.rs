//! Floor A: the cheapest a process started per connection can be — exec, nothing, exit.
fn main() {}
