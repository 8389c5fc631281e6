//! Order statistics between join order and admission order.

/// Kendall's tau-b between two rankings given as `ranks[i]` = the join rank
/// of the i-th admitted user (all distinct, so tau-b equals tau-a here).
/// O(n log n): discordant pairs are the inversions of `ranks`.
pub fn kendall_tau_b(ranks: &[u64]) -> f64 {
    let n = ranks.len() as f64;
    if ranks.len() < 2 {
        return 1.0;
    }
    let mut work = ranks.to_vec();
    let mut buffer = vec![0u64; work.len()];
    let discordant = inversions(&mut work, &mut buffer) as f64;
    let pairs = n * (n - 1.0) / 2.0;
    (pairs - 2.0 * discordant) / pairs
}

fn inversions(values: &mut [u64], buffer: &mut [u64]) -> u64 {
    let len = values.len();
    if len < 2 {
        return 0;
    }
    let mid = len / 2;
    let (left, right) = values.split_at_mut(mid);
    let (left_buffer, right_buffer) = buffer.split_at_mut(mid);
    let mut count = inversions(left, left_buffer) + inversions(right, right_buffer);
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < left.len() && j < right.len() {
        if left[i] <= right[j] {
            buffer[k] = left[i];
            i += 1;
        } else {
            buffer[k] = right[j];
            count += (left.len() - i) as u64;
            j += 1;
        }
        k += 1;
    }
    buffer[k..k + left.len() - i].copy_from_slice(&left[i..]);
    k += left.len() - i;
    buffer[k..k + right.len() - j].copy_from_slice(&right[j..]);
    values.copy_from_slice(&buffer[..len]);
    count
}

/// The most people any one user was admitted ahead of although they had
/// joined earlier: for position i, the later positions holding a smaller
/// join rank. O(n log n) with a Fenwick tree over ranks.
pub fn largest_overtake(ranks: &[u64]) -> u64 {
    let size = ranks.iter().max().map_or(0, |&m| m as usize + 1);
    let mut tree = vec![0u64; size + 1];
    let mut largest = 0;
    for &rank in ranks.iter().rev() {
        // Users admitted after this one with a smaller join rank.
        let mut index = rank as usize;
        let mut below = 0;
        while index > 0 {
            below += tree[index];
            index &= index - 1;
        }
        largest = largest.max(below);
        let mut index = rank as usize + 1;
        while index <= size {
            tree[index] += 1;
            index += index & index.wrapping_neg();
        }
    }
    largest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tau_b_is_one_in_order_and_minus_one_reversed() {
        assert_eq!(kendall_tau_b(&[0, 1, 2, 3, 4]), 1.0);
        assert_eq!(kendall_tau_b(&[4, 3, 2, 1, 0]), -1.0);
        // One swap among five: 1 discordant pair of 10.
        assert!((kendall_tau_b(&[0, 2, 1, 3, 4]) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn tau_b_matches_the_quadratic_definition() {
        let ranks: Vec<u64> = (0..300u64).map(|i| (i * 7919) % 300).collect();
        let mut discordant = 0u64;
        for i in 0..ranks.len() {
            for j in i + 1..ranks.len() {
                if ranks[i] > ranks[j] {
                    discordant += 1;
                }
            }
        }
        let pairs = (300.0 * 299.0) / 2.0;
        let expected = (pairs - 2.0 * discordant as f64) / pairs;
        assert!((kendall_tau_b(&ranks) - expected).abs() < 1e-12);
    }

    #[test]
    fn overtakes_count_earlier_joiners_admitted_later() {
        assert_eq!(largest_overtake(&[0, 1, 2, 3]), 0);
        assert_eq!(
            largest_overtake(&[3, 0, 1, 2]),
            3,
            "the last joiner went first, past three"
        );
        assert_eq!(largest_overtake(&[1, 0, 3, 2]), 1);
    }
}
