//! Deadlines: a hashed timer wheel holding at most one deadline per node.
