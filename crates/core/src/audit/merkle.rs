//! RFC 9162 Merkle tree hashing, proofs and proof verification.
//!
//! The audit log is committed to as an RFC 9162 (Certificate Transparency v2)
//! Merkle tree so that standard tooling and independent verifiers can check
//! inclusion and append-only consistency without trusting Mandate.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: leaf hashes, interior node hashes and tree roots.
pub type Hash = [u8; 32];

/// Domain-separation prefixes from RFC 9162 §2.1.1; they stop a leaf from
/// being passed off as an interior node (second-preimage attacks).
const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Hash of a leaf entry: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    h.finalize().into()
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree, `SHA-256("")` (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("requested tree size {size} is larger than the tree ({tree_size} leaves)")]
    SizeTooLarge { size: u64, tree_size: u64 },
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizesOutOfOrder { old_size: u64, new_size: u64 },
    #[error("malformed proof: expected {expected} hashes, got {actual}")]
    WrongProofLength { expected: usize, actual: usize },
    #[error("computed root hash does not match the expected root")]
    RootMismatch,
    #[error("computed old root hash does not match the expected old root")]
    OldRootMismatch,
}

/// Append-only in-memory Merkle tree answering for any prefix size.
///
/// `levels[k]` holds the hashes of every complete, aligned subtree of `2^k`
/// leaves (level 0 is the leaves). Any subtree the RFC algorithms ask for is
/// a run of such aligned blocks, so roots and proofs cost O(log n) hashes
/// instead of re-hashing the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree built from already-hashed leaves (see [`leaf_hash`]).
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }

    /// Appends a leaf hash, completing any subtrees it closes (O(log n)).
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut k = 0;
        while self.levels[k].len().is_multiple_of(2) {
            let n = self.levels[k].len();
            let parent = node_hash(&self.levels[k][n - 2], &self.levels[k][n - 1]);
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[k + 1].push(parent);
            k += 1;
        }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// Root hash of the whole tree.
    pub fn root(&self) -> Hash {
        self.subtree(0, self.len())
    }

    /// Root hash of the tree made of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(self.subtree(0, size))
    }

    /// Audit path for leaf `index` in the tree of the first `size` leaves
    /// (RFC 9162 §2.1.3.1), ordered from the leaf upwards.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Ok(proof)
    }

    /// Consistency proof between the trees of the first `old_size` and
    /// `new_size` leaves (RFC 9162 §2.1.4.1). Empty when there is nothing to
    /// prove (`old_size == 0` or `old_size == new_size`).
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(ProofError::SizesOutOfOrder { old_size, new_size });
        }
        let mut proof = Vec::new();
        if old_size > 0 && old_size < new_size {
            self.subproof(old_size, 0, new_size, true, &mut proof);
        }
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        let tree_size = self.len();
        if size > tree_size {
            return Err(ProofError::SizeTooLarge { size, tree_size });
        }
        Ok(())
    }

    /// MTH(D[start:end]), assembled from stored aligned subtrees.
    ///
    /// Every range the RFC recursion produces starts at a multiple of the
    /// largest power of two below its length, so the left half of each split
    /// is a stored block and only O(log n) nodes are hashed.
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(start >> level) as usize];
        }
        let k = split_point(n);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// PATH(m, D[start:end]) from RFC 9162 §2.1.3.1, appended to `out`.
    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.subtree(start, start + k));
        }
    }

    /// SUBPROOF(m, D[start:end], b) from RFC 9162 §2.1.4.1, appended to `out`.
    fn subproof(&self, m: u64, start: u64, end: u64, b: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !b {
                out.push(self.subtree(start, end));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, start + k, b, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.subtree(start, start + k));
        }
    }
}

/// Largest power of two strictly less than `n` (for `n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Number of hashes in a valid inclusion proof, so that a wrong-length proof
/// is reported as malformed rather than as a confusing root mismatch.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
///
/// The RFC algorithm covers `0 < old_size < new_size`; the trivial cases
/// require an empty proof, and we still check the roots they imply (equal
/// roots for equal sizes, the empty-tree root for size 0) so a caller cannot
/// be fooled by a bogus "old" root.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        if old_size == 0 {
            return if *old_root == empty_root() {
                Ok(())
            } else {
                Err(ProofError::OldRootMismatch)
            };
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }

    // Expected length: the inclusion path of leaf old_size-1 in the new tree,
    // minus the levels shared with the old tree's rightmost complete subtree,
    // plus one seed hash unless old_size is a power of two (then the seed is
    // the old root itself).
    let shift = old_size.trailing_zeros() as usize;
    let inner = (64 - ((old_size - 1) ^ (new_size - 1)).leading_zeros()) as usize;
    let border = ((old_size - 1) >> inner).count_ones() as usize;
    let seeded = old_size.is_power_of_two();
    let expected = inner - shift + border + usize::from(!seeded);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }

    let (seed, rest) = if seeded {
        (old_root, proof)
    } else {
        (&proof[0], &proof[1..])
    };
    let mut f_n = old_size - 1;
    let mut s_n = new_size - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr = *seed;
    let mut sr = *seed;
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Streaming root computation over a log too large to hold in memory.
///
/// Keeps only the "compact range": one hash per set bit of the current size
/// (the roots of the complete subtrees, left to right), i.e. O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootAccumulator {
    size: u64,
    frontier: Vec<Hash>,
}

impl RootAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash, merging the complete subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            // The frontier has one entry per set bit of `size`, so it cannot
            // run dry while `n` still has set bits.
            if let Some(left) = self.frontier.pop() {
                h = node_hash(&left, &h);
            }
            n >>= 1;
        }
        self.frontier.push(h);
        self.size += 1;
    }

    /// Number of leaves pushed so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Root of the tree of all leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.frontier.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- Naive reference implementation, straight from RFC 9162 §2.1 ----

    fn k_of(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn ref_mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => Sha256::digest(b"").into(),
            1 => d[0],
            n => {
                let k = k_of(n);
                node_hash(&ref_mth(&d[..k]), &ref_mth(&d[k..]))
            }
        }
    }

    fn ref_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = k_of(n);
        if m < k {
            let mut p = ref_path(m, &d[..k]);
            p.push(ref_mth(&d[k..]));
            p
        } else {
            let mut p = ref_path(m - k, &d[k..]);
            p.push(ref_mth(&d[..k]));
            p
        }
    }

    fn ref_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![ref_mth(d)] };
        }
        let k = k_of(n);
        if m <= k {
            let mut p = ref_subproof(m, &d[..k], b);
            p.push(ref_mth(&d[k..]));
            p
        } else {
            let mut p = ref_subproof(m - k, &d[k..], false);
            p.push(ref_mth(&d[..k]));
            p
        }
    }

    fn ref_proof(m: usize, d: &[Hash]) -> Vec<Hash> {
        if m == 0 || m == d.len() {
            vec![]
        } else {
            ref_subproof(m, d, true)
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("entry-{i}").as_bytes()))
            .collect()
    }

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    // ---- Known answers ----

    #[test]
    fn empty_tree_root_is_sha256_of_empty_string() {
        let expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(hex(&MerkleTree::new().root()), expected);
        assert_eq!(hex(&RootAccumulator::new().root()), expected);
        assert_eq!(hex(&MerkleTree::new().root_at(0).unwrap()), expected);
    }

    #[test]
    fn one_leaf_tree_root_is_leaf_hash() {
        // SHA-256(0x00 || "hello"), computed independently with Python's hashlib.
        let expected = "8a2a5c9b768827de5a9552c38a044c66959c68f6d2f21b5260af54d2f87db827";
        let leaf = leaf_hash(b"hello");
        assert_eq!(hex(&leaf), expected);
        let tree = MerkleTree::from_leaves([leaf]);
        assert_eq!(hex(&tree.root()), expected);
        assert_eq!(tree.inclusion_proof(0, 1).unwrap(), Vec::<Hash>::new());
        verify_inclusion(&leaf, 0, 1, &[], &tree.root()).unwrap();
    }

    // ---- Exhaustive small cases against the reference ----

    #[test]
    fn matches_reference_exhaustively_for_small_trees() {
        let d = leaves(40);
        let tree = MerkleTree::from_leaves(d.iter().copied());
        for size in 0..=d.len() {
            let root = ref_mth(&d[..size]);
            assert_eq!(tree.root_at(size as u64).unwrap(), root);
            for m in 0..size {
                let proof = tree.inclusion_proof(m as u64, size as u64).unwrap();
                assert_eq!(proof, ref_path(m, &d[..size]));
                verify_inclusion(&d[m], m as u64, size as u64, &proof, &root).unwrap();
            }
            for old in 0..=size {
                let proof = tree.consistency_proof(old as u64, size as u64).unwrap();
                assert_eq!(proof, ref_proof(old, &d[..size]), "old={old} new={size}");
                let old_root = ref_mth(&d[..old]);
                verify_consistency(old as u64, size as u64, &old_root, &root, &proof).unwrap();
            }
        }
    }

    #[test]
    fn argument_errors() {
        let tree = MerkleTree::from_leaves(leaves(5));
        assert_eq!(
            tree.root_at(6),
            Err(ProofError::SizeTooLarge {
                size: 6,
                tree_size: 5
            })
        );
        assert_eq!(
            tree.inclusion_proof(5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            tree.inclusion_proof(0, 6),
            Err(ProofError::SizeTooLarge {
                size: 6,
                tree_size: 5
            })
        );
        assert_eq!(
            tree.consistency_proof(4, 3),
            Err(ProofError::SizesOutOfOrder {
                old_size: 4,
                new_size: 3
            })
        );
        assert_eq!(
            tree.consistency_proof(1, 6),
            Err(ProofError::SizeTooLarge {
                size: 6,
                tree_size: 5
            })
        );
        let root = tree.root();
        let leaf = tree.leaf(0).unwrap();
        assert_eq!(
            verify_inclusion(&leaf, 0, 0, &[], &root),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        let mut proof = tree.inclusion_proof(0, 5).unwrap();
        proof.push(root);
        assert!(matches!(
            verify_inclusion(&leaf, 0, 5, &proof, &root),
            Err(ProofError::WrongProofLength { .. })
        ));
        // Trivial consistency cases still check the roots they imply.
        assert_eq!(verify_consistency(3, 3, &root, &root, &[]), Ok(()));
        assert_eq!(
            verify_consistency(3, 3, &leaf, &root, &[]),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(verify_consistency(0, 5, &empty_root(), &root, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 5, &root, &root, &[]),
            Err(ProofError::OldRootMismatch)
        );
        assert!(matches!(
            verify_consistency(3, 3, &root, &root, &[root]),
            Err(ProofError::WrongProofLength {
                expected: 0,
                actual: 1
            })
        ));
    }

    #[test]
    fn large_tree_proofs_are_fast_and_valid() {
        // A million leaves: proofs must come from stored levels, not recomputation.
        let n = 1_000_000u64;
        let mut tree = MerkleTree::new();
        let mut acc = RootAccumulator::new();
        for i in 0..n {
            let l = leaf_hash(&i.to_be_bytes());
            tree.push(l);
            acc.push(l);
        }
        let root = tree.root();
        assert_eq!(acc.root(), root);
        let start = std::time::Instant::now();
        for (index, size) in [(0, n), (n - 1, n), (123_457, 999_999), (777_777, 800_001)] {
            let proof = tree.inclusion_proof(index, size).unwrap();
            let r = tree.root_at(size).unwrap();
            verify_inclusion(&tree.leaf(index).unwrap(), index, size, &proof, &r).unwrap();
        }
        for (old, new) in [(1, n), (524_288, n), (999_999, n), (300_001, 700_003)] {
            let proof = tree.consistency_proof(old, new).unwrap();
            let (r1, r2) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
            verify_consistency(old, new, &r1, &r2, &proof).unwrap();
        }
        // Generous bound for a debug build on a busy machine; recomputing a
        // million-leaf tree for each of these calls would take many seconds.
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn accumulator_matches_tree_at_every_size() {
        let d = leaves(1100);
        let mut tree = MerkleTree::new();
        let mut acc = RootAccumulator::new();
        assert_eq!(acc.root(), tree.root());
        for l in d {
            tree.push(l);
            acc.push(l);
            assert_eq!(acc.len(), tree.len());
            assert_eq!(acc.root(), tree.root(), "size {}", tree.len());
        }
    }

    // ---- Property tests ----

    /// (leaf count, index, old size, new size) with index < new, old <= new <= count.
    fn tree_params() -> impl Strategy<Value = (usize, usize, usize, usize)> {
        (1usize..300)
            .prop_flat_map(|n| (Just(n), 1..=n))
            .prop_flat_map(|(n, new)| (Just(n), 0..new, 0..=new, Just(new)))
    }

    proptest! {
        #[test]
        fn proofs_match_reference_and_verify((n, index, old, new) in tree_params()) {
            let d = leaves(n);
            let tree = MerkleTree::from_leaves(d.iter().copied());
            prop_assert_eq!(tree.root(), ref_mth(&d));
            let new_root = ref_mth(&d[..new]);
            let old_root = ref_mth(&d[..old]);
            prop_assert_eq!(tree.root_at(new as u64).unwrap(), new_root);
            prop_assert_eq!(tree.root_at(old as u64).unwrap(), old_root);

            let incl = tree.inclusion_proof(index as u64, new as u64).unwrap();
            prop_assert_eq!(&incl, &ref_path(index, &d[..new]));
            prop_assert_eq!(verify_inclusion(&d[index], index as u64, new as u64, &incl, &new_root), Ok(()));

            let cons = tree.consistency_proof(old as u64, new as u64).unwrap();
            prop_assert_eq!(&cons, &ref_proof(old, &d[..new]));
            prop_assert_eq!(verify_consistency(old as u64, new as u64, &old_root, &new_root, &cons), Ok(()));
        }

        #[test]
        fn tampering_is_detected(
            (n, index, old, new) in tree_params(),
            pick in any::<prop::sample::Index>(),
            bit in 0usize..256,
            other in any::<prop::sample::Index>(),
        ) {
            let d = leaves(n);
            let tree = MerkleTree::from_leaves(d.iter().copied());
            let (i, size) = (index as u64, new as u64);
            let root = tree.root_at(size).unwrap();
            let old_root = tree.root_at(old as u64).unwrap();
            let flip = |h: &mut Hash| h[bit / 8] ^= 1 << (bit % 8);

            // Inclusion: flipped proof element, wrong index, wrong root, wrong leaf.
            let incl = tree.inclusion_proof(i, size).unwrap();
            if !incl.is_empty() {
                let mut bad = incl.clone();
                let at = pick.index(bad.len());
                flip(&mut bad[at]);
                prop_assert!(verify_inclusion(&d[index], i, size, &bad, &root).is_err());
            }
            let wrong_index = other.index(new + 1) as u64; // may be == size: out of range
            if wrong_index != i {
                prop_assert!(verify_inclusion(&d[index], wrong_index, size, &incl, &root).is_err());
            }
            let mut bad_root = root;
            flip(&mut bad_root);
            prop_assert!(verify_inclusion(&d[index], i, size, &incl, &bad_root).is_err());
            let mut bad_leaf = d[index];
            flip(&mut bad_leaf);
            prop_assert!(verify_inclusion(&bad_leaf, i, size, &incl, &root).is_err());

            // Consistency: flipped proof element, wrong roots, wrong old size.
            let cons = tree.consistency_proof(old as u64, size).unwrap();
            if !cons.is_empty() {
                let mut bad = cons.clone();
                let at = pick.index(bad.len());
                flip(&mut bad[at]);
                prop_assert!(verify_consistency(old as u64, size, &old_root, &root, &bad).is_err());
            }
            if old > 0 {
                // Every tree is consistent with the empty tree, whatever its root.
                prop_assert!(verify_consistency(old as u64, size, &old_root, &bad_root, &cons).is_err());
            }
            let mut bad_old_root = old_root;
            flip(&mut bad_old_root);
            prop_assert!(verify_consistency(old as u64, size, &bad_old_root, &root, &cons).is_err());
            let wrong_old = other.index(new + 1) as u64;
            if wrong_old != old as u64 && old != new {
                prop_assert!(verify_consistency(wrong_old, size, &old_root, &root, &cons).is_err());
            }
        }

        #[test]
        fn accumulator_matches_tree(n in 0usize..300) {
            let d = leaves(n);
            let mut acc = RootAccumulator::new();
            for l in &d {
                acc.push(*l);
            }
            prop_assert_eq!(acc.len(), n as u64);
            prop_assert_eq!(acc.root(), MerkleTree::from_leaves(d.iter().copied()).root());
        }
    }
}
