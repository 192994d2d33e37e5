//! SeaORM entities mirroring the tables `telcall-migration` creates. The migration is the
//! source of truth for the schema; these only describe it to the query builder.

pub mod call_stats;
pub mod calls;
pub mod friend_links;
pub mod participants;
pub mod users;
