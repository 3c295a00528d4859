//! Memory for the frames decoding at once on the blocking pool (the GPU path, where decodes run
//! side by side without a bound of their own). A picture is decoded whole, sometimes more than
//! once over (a 16-bit buffer, a turned copy, the RGB result), and a small file can declare a
//! huge picture: a few sessions sending such files would otherwise take gigabytes at once.
//! Each frame reserves what its header says it may need before it decodes, and gives it back
//! when done; when the budget is spent a frame waits its turn, up to a bound, and is then
//! refused (503). On the CPU backend each worker decodes one frame at a time, so the workers
//! bound it there.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const MIB: u64 = 1 << 20;

/// The memory frames may take to decode at once, in mebibytes.
#[derive(Debug, Clone)]
pub struct DecodeBudget {
    free_mib: Arc<Semaphore>,
    total_mib: u32,
    longest_wait: Duration,
}

/// Memory reserved for one frame's decode; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

/// The budget stayed spent for as long as a frame may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSpent;

impl DecodeBudget {
    pub fn new(total_mib: u32, longest_wait: Duration) -> Self {
        let total_mib =
            total_mib.clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            free_mib: Arc::new(Semaphore::new(total_mib as usize)),
            total_mib,
            longest_wait,
        }
    }

    /// Reserves `bytes` for a decode, waiting for other decodes to give memory back. A frame
    /// that needs more than the whole budget takes all of it, so that every frame the side
    /// limit lets through can decode, alone.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, BudgetSpent> {
        let mib = u32::try_from(bytes.div_ceil(MIB))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_mib);
        let wait = self.free_mib.clone().acquire_many_owned(mib);
        match tokio::time::timeout(self.longest_wait, wait).await {
            Ok(permit) => Ok(Reservation {
                _permit: permit.expect("the budget is never closed"),
            }),
            Err(_) => Err(BudgetSpent),
        }
    }

    /// Mebibytes reserved now.
    pub fn reserved_mib(&self) -> u32 {
        self.total_mib - self.free_mib.available_permits() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn decodes_wait_for_memory_and_are_refused_past_the_bound() {
        let budget = DecodeBudget::new(100, Duration::from_millis(50));
        let first = budget.reserve(60 * MIB).await.unwrap();
        assert_eq!(budget.reserved_mib(), 60);
        // 60 + 50 > 100: the second waits, and gives up at the bound.
        assert_eq!(budget.reserve(50 * MIB).await.unwrap_err(), BudgetSpent);
        // A small one fits beside the first.
        let small = budget.reserve(1).await.unwrap();
        assert_eq!(budget.reserved_mib(), 61);
        drop(first);
        drop(small);
        assert_eq!(budget.reserved_mib(), 0);
    }

    #[tokio::test]
    async fn a_waiting_decode_runs_when_memory_comes_back() {
        let budget = DecodeBudget::new(100, Duration::from_secs(60));
        let first = budget.reserve(80 * MIB).await.unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(80 * MIB).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_budget_takes_all_of_it() {
        let budget = DecodeBudget::new(100, Duration::from_millis(50));
        let huge = budget.reserve(10_000 * MIB).await.unwrap();
        assert_eq!(budget.reserved_mib(), 100);
        assert_eq!(budget.reserve(1).await.unwrap_err(), BudgetSpent);
        drop(huge);
    }
}
