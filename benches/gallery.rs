//! 1:N search: one probe against galleries of 10k, 100k and 1M templates, the five most
//! similar kept, on one thread.
//!
//!     cargo bench --bench gallery
//!
//! The templates are random directions (the scan's cost does not depend on the values).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use face_service::matching::{Gallery, Template};
use face_service::models::recognizer::TEMPLATE_LEN;

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

fn random_template(state: &mut u64) -> Template {
    let values: Vec<f32> = (0..TEMPLATE_LEN)
        .map(|_| {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Template::from_embedding(&values).expect("random values have a direction")
}

fn search(c: &mut Criterion) {
    let mut state = 7;
    let probe = random_template(&mut state);
    let mut group = c.benchmark_group("gallery");
    group.sample_size(20).warm_up_time(Duration::from_secs(1));
    for size in SIZES {
        let mut gallery = Gallery::default();
        for key in 0..size {
            gallery.insert(key, &random_template(&mut state));
        }
        group.bench_with_input(BenchmarkId::new("search_top5", size), &gallery, |b, g| {
            b.iter(|| std::hint::black_box(g.search(&probe, 5)));
        });
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
