#![no_main]
//! Any bytes as a tree blob: decoding refuses, or returns a tree within the bounds that
//! encodes to one decoding to itself.
use envsnap::tree::{MAX_CONTENT, MAX_NAME, MAX_NODES, MAX_TARGET, Tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(tree) = Tree::decode(bytes) {
        assert!(tree.nodes.len() <= MAX_NODES);
        for node in &tree.nodes {
            assert!(node.name.len() <= MAX_NAME);
            assert!(node.content.len() <= MAX_CONTENT);
            assert!(node.target.as_ref().is_none_or(|target| target.len() <= MAX_TARGET));
        }
        let again = Tree::decode(&tree.encode()).expect("a tree that was read is written readably");
        assert_eq!(again, tree);
    }
});
