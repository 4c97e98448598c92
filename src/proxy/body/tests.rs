use std::time::Duration;

use super::*;

#[tokio::test(start_paused = true)]
async fn a_body_below_the_minimum_rate_is_cut_off_after_a_window() {
    let window = Duration::from_secs(10);
    // 500 bytes a second: 2 bytes every 2 s is far below.
    let mut pace = Pace::new(500, window);
    let mut kept = 0;
    while pace.keeps_up(2) {
        kept += 1;
        assert!(kept < 10, "never judged");
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    assert_eq!(kept, 5, "judged once the first window had passed");
}

#[tokio::test(start_paused = true)]
async fn a_body_at_the_minimum_rate_goes_on_and_so_does_any_body_without_one() {
    let window = Duration::from_secs(10);
    let mut pace = Pace::new(500, window);
    let mut free = Pace::new(0, window);
    for _ in 0..60 {
        assert!(pace.keeps_up(1000), "1000 bytes every 2 s is 500 a second");
        assert!(free.keeps_up(1));
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    // A burst makes up for a slow start within one window.
    let mut pace = Pace::new(500, window);
    assert!(pace.keeps_up(1));
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(pace.keeps_up(4999));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(pace.keeps_up(1));
}
