//! Each VPC's router and system route table (VPC API DescribeRouteTableList; the ECS-endpoint
//! DescribeVRouters and DescribeRouteTables). A VPC has one of each, kept on its row.

use super::R;
use super::listing::{Listing, Scope};
use super::vpc::{VPC_COLUMNS, Vpc, empty_list, owner_id, vpc_row};
use crate::Env;
use crate::shapes::TimeText;
use ecs_api::Node;
use ecs_api::params::Paging;
use ecs_api::vpc::DescribeRouteTableList;
use ecs_api::write::{Emit, Out};
use rusqlite::Connection;

/// One system route table, as DescribeRouteTableList lists it.
struct RouteTable(Vpc, i64);

impl Emit for RouteTable {
    fn emit(&self, o: &mut dyn Out) {
        let v = &self.0;
        o.begin_obj();
        o.field("VpcId", &v.id);
        o.field("RouteTableId", &v.route_table_id);
        o.field("RouteTableName", "");
        o.field("RouteTableType", "System");
        o.field("RouterId", &v.vrouter_id);
        o.field("RouterType", "VRouter");
        o.field("Status", if v.status == "Available" { "Available" } else { "Creating" });
        o.field("CreationTime", TimeText::secs(v.created_ms).as_str());
        o.field("Description", "");
        o.field("ResourceGroupId", &v.resource_group_id);
        o.field("OwnerId", &self.1);
        o.field("AssociateType", "VSwitch");
        o.field("RoutePropagationEnable", &true);
        o.wrapped("VSwitchIds", "VSwitchId", |o| {
            for id in &v.vswitch_ids {
                o.str(id);
            }
        });
        empty_list(o, "GatewayIds", "GatewayIds");
        empty_list(o, "Tags", "Tag");
        o.end_obj();
    }
}

pub(crate) fn describe_route_table_list(conn: &Connection, env: &Env, d: DescribeRouteTableList) -> R<Node> {
    // Each VPC has one system route table, kept on its row.
    let mut q = Listing::new("route_table", "vpcs", VPC_COLUMNS, env, Scope::Own);
    q.eq("id", d.vpc_id).eq("route_table_id", d.route_table_id).eq("vrouter_id", d.router_id);
    if d.route_table_type.is_some_and(|t| t != "System") {
        q.clause("0", []);
    }
    let owner = owner_id(env);
    let page = q.fetch(conn, &d.paging, |r| Ok(RouteTable(vpc_row(conn, env, r)?, owner)))?;
    let mut out = Node::obj();
    page.render(&d.paging, ("RouterTableList", "RouterTableListType"), &mut out);
    Ok(out)
}

/// One VPC's router, as DescribeVRouters (ECS 2014-05-26) lists it.
struct VRouter(Vpc);

impl Emit for VRouter {
    fn emit(&self, o: &mut dyn Out) {
        let v = &self.0;
        o.begin_obj();
        o.field("VRouterId", &v.vrouter_id);
        o.field("VpcId", &v.id);
        o.field("RegionId", &v.region_id);
        o.field("VRouterName", "");
        o.field("Description", "");
        o.field("CreationTime", TimeText::secs(v.created_ms).as_str());
        o.wrapped("RouteTableIds", "RouteTableId", |o| o.str(&v.route_table_id));
        o.end_obj();
    }
}

pub(crate) fn describe_vrouters(conn: &Connection, env: &Env, id: Option<String>, paging: Paging) -> R<Node> {
    let mut q = Listing::new("vrouter", "vpcs", VPC_COLUMNS, env, Scope::Own);
    q.eq("vrouter_id", id);
    let page = q.fetch(conn, &paging, |r| Ok(VRouter(vpc_row(conn, env, r)?)))?;
    let mut out = Node::obj();
    page.render(&paging, ("VRouters", "VRouter"), &mut out);
    Ok(out)
}

/// One VPC's system route table with its entries, as DescribeRouteTables (ECS 2014-05-26)
/// lists it: a `local` route for each vSwitch's block and the `service` route to 100.64.0.0/10
/// that every VPC has.
struct SystemRoutes(Vpc, Vec<String>);

impl Emit for SystemRoutes {
    fn emit(&self, o: &mut dyn Out) {
        let v = &self.0;
        o.begin_obj();
        o.field("RouteTableId", &v.route_table_id);
        o.field("VRouterId", &v.vrouter_id);
        o.field("RouteTableType", "System");
        o.field("CreationTime", TimeText::secs(v.created_ms).as_str());
        o.field("ResourceGroupId", &v.resource_group_id);
        o.wrapped("RouteEntrys", "RouteEntry", |o| {
            let local = self.1.iter().map(|c| (c.as_str(), "local"));
            for (cidr, hop) in local.chain([("100.64.0.0/10", "service")]) {
                o.begin_obj();
                o.field("RouteTableId", &v.route_table_id);
                o.field("DestinationCidrBlock", cidr);
                o.field("Type", "System");
                o.field("Status", "Available");
                o.field("InstanceId", "");
                o.field("NextHopType", hop);
                o.wrapped("NextHops", "NextHop", |_| {});
                o.end_obj();
            }
        });
        o.end_obj();
    }
}

pub(crate) fn describe_route_tables(
    conn: &Connection,
    env: &Env,
    router: Option<String>,
    table: Option<String>,
    paging: Paging,
) -> R<Node> {
    let mut q = Listing::new("route_table", "vpcs", VPC_COLUMNS, env, Scope::Own);
    q.eq("vrouter_id", router).eq("route_table_id", table);
    let page = q.fetch(conn, &paging, |r| {
        let v = vpc_row(conn, env, r)?;
        let mut st = conn.prepare_cached(
            "SELECT cidr_block FROM vswitches WHERE vpc_id=?1 AND released=0 ORDER BY created_ms, id",
        )?;
        let blocks = st.query_map([&v.id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(SystemRoutes(v, blocks))
    })?;
    let mut out = Node::obj();
    page.render(&paging, ("RouteTables", "RouteTable"), &mut out);
    Ok(out)
}
