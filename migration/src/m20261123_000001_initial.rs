//! The initial schema: users, calls, participants, friend links and call statistics.
//!
//! Timestamps are `timestamp with time zone` on PostgreSQL. SQLite has no such type; the
//! column is text there and `telcall-persistence` always writes one fixed-width UTC format,
//! so that comparing and ordering the text agrees with comparing the instants.

use sea_orm_migration::prelude::*;

/// Creates the five tables and the indexes the repository queries use.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    TelegramUserId,
    Username,
    FirstName,
    LastName,
    PhotoUrl,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Calls {
    Table,
    Id,
    Code,
    CreatorId,
    Title,
    IsVideoEnabled,
    Status,
    CreatedAt,
    ExpiresAt,
    EndedAt,
}

#[derive(DeriveIden)]
enum Participants {
    Table,
    Id,
    CallId,
    UserId,
    JoinedAt,
    LeftAt,
}

#[derive(DeriveIden)]
enum FriendLinks {
    Table,
    Id,
    UserId,
    FriendId,
    LastCallAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CallStats {
    Table,
    Id,
    CallId,
    UserId,
    DurationSeconds,
    AudioBitrateKbps,
    AudioPacketsLost,
    AudioPacketsSent,
    AudioJitterMs,
    VideoBitrateKbps,
    VideoPacketsLost,
    VideoPacketsSent,
    VideoFrameRate,
    VideoResolution,
    RttMs,
    CreatedAt,
}

/// A `bigint` auto-increment primary key (`bigserial` on PostgreSQL, the rowid alias
/// `integer primary key autoincrement` on SQLite).
fn pk(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

/// A time-zone aware timestamp column.
fn ts(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().to_owned()
}

/// A `bigint not null` column referencing another table.
fn fk_col(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

/// An `ON DELETE CASCADE` foreign key.
fn cascade(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .on_update(ForeignKeyAction::Cascade)
        .to_owned()
}

/// Indexes beyond primary keys and unique columns: `(name, table, columns, unique)`.
fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("idx_calls_creator_status")
            .table(Calls::Table)
            .col(Calls::CreatorId)
            .col(Calls::Status)
            .to_owned(),
        Index::create()
            .name("idx_calls_status_expires_at")
            .table(Calls::Table)
            .col(Calls::Status)
            .col(Calls::ExpiresAt)
            .to_owned(),
        Index::create()
            .name("idx_participants_call_user")
            .table(Participants::Table)
            .col(Participants::CallId)
            .col(Participants::UserId)
            .to_owned(),
        // Serves ON DELETE CASCADE from users.
        Index::create()
            .name("idx_participants_user")
            .table(Participants::Table)
            .col(Participants::UserId)
            .to_owned(),
        Index::create()
            .name("uq_friend_links_user_friend")
            .table(FriendLinks::Table)
            .col(FriendLinks::UserId)
            .col(FriendLinks::FriendId)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_friend_links_user_last_call")
            .table(FriendLinks::Table)
            .col(FriendLinks::UserId)
            .col(FriendLinks::LastCallAt)
            .to_owned(),
        // Serves deleting the reverse direction and ON DELETE CASCADE from users.
        Index::create()
            .name("idx_friend_links_friend")
            .table(FriendLinks::Table)
            .col(FriendLinks::FriendId)
            .to_owned(),
        Index::create()
            .name("idx_call_stats_call")
            .table(CallStats::Table)
            .col(CallStats::CallId)
            .to_owned(),
        Index::create()
            .name("idx_call_stats_user_created")
            .table(CallStats::Table)
            .col(CallStats::UserId)
            .col(CallStats::CreatedAt)
            .to_owned(),
    ]
}

fn users() -> TableCreateStatement {
    Table::create()
        .table(Users::Table)
        .col(pk(Users::Id))
        .col(
            ColumnDef::new(Users::TelegramUserId)
                .big_integer()
                .not_null()
                .unique_key(),
        )
        .col(ColumnDef::new(Users::Username).string_len(64).null())
        .col(ColumnDef::new(Users::FirstName).text().null())
        .col(ColumnDef::new(Users::LastName).text().null())
        .col(ColumnDef::new(Users::PhotoUrl).text().null())
        .col(ts(Users::CreatedAt).not_null())
        .col(ts(Users::UpdatedAt).not_null())
        .to_owned()
}

fn calls() -> TableCreateStatement {
    Table::create()
        .table(Calls::Table)
        .col(pk(Calls::Id))
        .col(
            ColumnDef::new(Calls::Code)
                .string_len(32)
                .not_null()
                .unique_key(),
        )
        .col(fk_col(Calls::CreatorId))
        .col(ColumnDef::new(Calls::Title).string_len(255).null())
        .col(
            ColumnDef::new(Calls::IsVideoEnabled)
                .boolean()
                .not_null()
                .default(false),
        )
        .col(
            ColumnDef::new(Calls::Status)
                .string_len(16)
                .not_null()
                .check(Expr::col(Calls::Status).is_in(["active", "ended", "expired"])),
        )
        .col(ts(Calls::CreatedAt).not_null())
        .col(ts(Calls::ExpiresAt).not_null())
        .col(ts(Calls::EndedAt).null())
        .foreign_key(&mut cascade(
            "fk_calls_creator",
            (Calls::Table, Calls::CreatorId),
            (Users::Table, Users::Id),
        ))
        .to_owned()
}

fn participants() -> TableCreateStatement {
    Table::create()
        .table(Participants::Table)
        .col(pk(Participants::Id))
        .col(fk_col(Participants::CallId))
        .col(fk_col(Participants::UserId))
        .col(ts(Participants::JoinedAt).not_null())
        .col(ts(Participants::LeftAt).null())
        .foreign_key(&mut cascade(
            "fk_participants_call",
            (Participants::Table, Participants::CallId),
            (Calls::Table, Calls::Id),
        ))
        .foreign_key(&mut cascade(
            "fk_participants_user",
            (Participants::Table, Participants::UserId),
            (Users::Table, Users::Id),
        ))
        .to_owned()
}

fn friend_links() -> TableCreateStatement {
    Table::create()
        .table(FriendLinks::Table)
        .col(pk(FriendLinks::Id))
        .col(fk_col(FriendLinks::UserId))
        .col(fk_col(FriendLinks::FriendId))
        .col(ts(FriendLinks::LastCallAt).not_null())
        .col(ts(FriendLinks::CreatedAt).not_null())
        .foreign_key(&mut cascade(
            "fk_friend_links_user",
            (FriendLinks::Table, FriendLinks::UserId),
            (Users::Table, Users::Id),
        ))
        .foreign_key(&mut cascade(
            "fk_friend_links_friend",
            (FriendLinks::Table, FriendLinks::FriendId),
            (Users::Table, Users::Id),
        ))
        .to_owned()
}

fn call_stats() -> TableCreateStatement {
    let double = |c: CallStats| ColumnDef::new(c).double().null().to_owned();
    let bigint = |c: CallStats| ColumnDef::new(c).big_integer().null().to_owned();
    Table::create()
        .table(CallStats::Table)
        .col(pk(CallStats::Id))
        .col(fk_col(CallStats::CallId))
        .col(fk_col(CallStats::UserId))
        .col(double(CallStats::DurationSeconds))
        .col(double(CallStats::AudioBitrateKbps))
        .col(bigint(CallStats::AudioPacketsLost))
        .col(bigint(CallStats::AudioPacketsSent))
        .col(double(CallStats::AudioJitterMs))
        .col(double(CallStats::VideoBitrateKbps))
        .col(bigint(CallStats::VideoPacketsLost))
        .col(bigint(CallStats::VideoPacketsSent))
        .col(double(CallStats::VideoFrameRate))
        .col(
            ColumnDef::new(CallStats::VideoResolution)
                .string_len(32)
                .null(),
        )
        .col(double(CallStats::RttMs))
        .col(ts(CallStats::CreatedAt).not_null())
        .foreign_key(&mut cascade(
            "fk_call_stats_call",
            (CallStats::Table, CallStats::CallId),
            (Calls::Table, Calls::Id),
        ))
        .foreign_key(&mut cascade(
            "fk_call_stats_user",
            (CallStats::Table, CallStats::UserId),
            (Users::Table, Users::Id),
        ))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            users(),
            calls(),
            participants(),
            friend_links(),
            call_stats(),
        ] {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Children before parents; dropping a table drops its indexes.
        let tables = [
            CallStats::Table.into_iden(),
            FriendLinks::Table.into_iden(),
            Participants::Table.into_iden(),
            Calls::Table.into_iden(),
            Users::Table.into_iden(),
        ];
        for table in tables {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // SQLite has transactional DDL too: a failed migration leaves nothing behind.
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints the DDL for eyeballing with `cargo test -- --nocapture`.
    #[test]
    fn ddl_renders_on_both_backends() {
        for table in [
            users(),
            calls(),
            participants(),
            friend_links(),
            call_stats(),
        ] {
            let sqlite = table.to_string(SqliteQueryBuilder);
            let pg = table.to_string(PostgresQueryBuilder);
            println!("{sqlite}\n{pg}");
            assert!(pg.contains("timestamp with time zone"));
            assert!(sqlite.contains("PRIMARY KEY AUTOINCREMENT"));
        }
        for index in indexes() {
            println!("{}", index.to_string(PostgresQueryBuilder));
        }
    }
}
