//! `lienthong group ...`: named groups of agencies, addressed as group:NAME.

use clap::Subcommand;
use lienthong_proto::{self as proto, admin_client::AdminClient};

use super::{Connection, status_error};

/// `lienthong group ...`
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create or replace a group.
    Put {
        /// Name: a-z 0-9 and dashes; address it as group:NAME.
        name: String,
        /// Member org codes, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
        /// What the group is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List groups.
    List,
    /// Delete a group.
    Delete {
        /// Name.
        name: String,
    },
}

fn print_group(group: &proto::Group) {
    println!(
        "group:{}  {} member(s)  {}",
        group.name,
        group.members.len(),
        group.description
    );
    println!("    {}", group.members.join(", "));
}

/// Runs a group command.
pub async fn group(command: GroupCommand, connection: &Connection) -> anyhow::Result<()> {
    let mut client = AdminClient::new(connection.channel().await?);
    match command {
        GroupCommand::Put {
            name,
            members,
            description,
        } => {
            let response = client
                .put_group(proto::PutGroupRequest {
                    group: Some(proto::Group {
                        name,
                        description,
                        members,
                    }),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            response.group.iter().for_each(print_group);
        }
        GroupCommand::List => {
            let response = client
                .list_groups(proto::ListGroupsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if response.groups.is_empty() {
                println!("no groups");
            }
            response.groups.iter().for_each(print_group);
        }
        GroupCommand::Delete { name } => {
            client
                .delete_group(proto::DeleteGroupRequest { name: name.clone() })
                .await
                .map_err(status_error)?;
            println!("deleted group:{name}");
        }
    }
    Ok(())
}
