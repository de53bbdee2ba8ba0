"""Security groups through the official SDK (issue 10): groups and their rules in the catalog,
instances that are always in 1 to 5 groups (RunInstances, Join, Leave, DescribeInstances),
the documented DependencyViolation rows of DeleteSecurityGroup, paging, isolation between
accounts, every documented error row implemented, and the XML shapes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from alibabacloud_ecs20140526 import models as ecs_models

from support import REGION, _m, catch, raw_v1

M = ecs_models


def create(api, name=None, **kw):
    return _m(api.client.create_security_group(M.CreateSecurityGroupRequest(
        region_id=REGION, security_group_name=name, **kw)))["SecurityGroupId"]


def groups(api, **kw):
    return _m(api.client.describe_security_groups(M.DescribeSecurityGroupsRequest(region_id=REGION, **kw)))


def ids(body):
    return [g["SecurityGroupId"] for g in body["SecurityGroups"]["SecurityGroup"]]


def attr(api, gid, **kw):
    return _m(api.client.describe_security_group_attribute(M.DescribeSecurityGroupAttributeRequest(
        region_id=REGION, security_group_id=gid, **kw)))


def rules(api, gid, **kw):
    return attr(api, gid, **kw)["Permissions"]["Permission"]


def authorize(api, gid, **kw):
    return _m(api.client.authorize_security_group(M.AuthorizeSecurityGroupRequest(
        region_id=REGION, security_group_id=gid, **kw)))


def authorize_egress(api, gid, **kw):
    return _m(api.client.authorize_security_group_egress(M.AuthorizeSecurityGroupEgressRequest(
        region_id=REGION, security_group_id=gid, **kw)))


def revoke(api, gid, **kw):
    return _m(api.client.revoke_security_group(M.RevokeSecurityGroupRequest(
        region_id=REGION, security_group_id=gid, **kw)))


def join(api, iid, gid):
    return _m(api.client.join_security_group(M.JoinSecurityGroupRequest(instance_id=iid, security_group_id=gid)))


def leave(api, iid, gid):
    return _m(api.client.leave_security_group(M.LeaveSecurityGroupRequest(instance_id=iid, security_group_id=gid)))


def delete(api, gid):
    return _m(api.client.delete_security_group(M.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=gid)))


def instance_groups(api, iid):
    return api.instance(iid)["SecurityGroupIds"]["SecurityGroupId"]


def new_vpc(api, cidr: str = "10.0.0.0/16") -> str:
    """A VPC of the tenant's (the ECS-endpoint CreateVpc)."""
    return api.call("CreateVpc", {"RegionId": REGION, "CidrBlock": cidr})["VpcId"]


def test_groups_and_rules_round_trip(tenant):
    tag = [M.CreateSecurityGroupRequestTag(key="env", value="prod")]
    vpc_abc = new_vpc(tenant)
    gid = create(tenant, "web", description="web tier", vpc_id=vpc_abc, tag=tag)
    assert gid.startswith("sg-")
    g = groups(tenant)["SecurityGroups"]["SecurityGroup"][0]
    assert (g["SecurityGroupId"], g["SecurityGroupName"], g["Description"], g["VpcId"]) == (gid, "web", "web tier", vpc_abc)
    assert (g["SecurityGroupType"], g["EcsCount"], g["RuleCount"], g["AvailableInstanceAmount"]) == ("normal", 0, 0, 1000)
    assert g["Tags"]["Tag"] == [{"TagKey": "env", "TagValue": "prod"}] and g["CreationTime"].endswith("Z")

    authorize(tenant, gid, ip_protocol="tcp", port_range="22/22", source_cidr_ip="10.0.0.0/8", description="ssh")
    P = M.AuthorizeSecurityGroupRequestPermissions
    authorize(tenant, gid, permissions=[
        P(ip_protocol="TCP", port_range="80/443", source_cidr_ip="0.0.0.0/0", priority="10"),
        P(ip_protocol="icmp", source_cidr_ip="192.168.0.1", policy="drop"),
    ])
    authorize_egress(tenant, gid, ip_protocol="all", port_range="-1/-1", dest_cidr_ip="0.0.0.0/0")
    # The same rule again changes nothing.
    authorize(tenant, gid, ip_protocol="TCP", port_range="22/22", source_cidr_ip="10.0.0.0/8")

    body = attr(tenant, gid)
    assert (body["SecurityGroupId"], body["SecurityGroupName"], body["VpcId"], body["InnerAccessPolicy"]) == (
        gid, "web", vpc_abc, "Accept")
    perms = body["Permissions"]["Permission"]
    assert [(p["Direction"], p["IpProtocol"], p["PortRange"]) for p in perms] == [
        ("ingress", "TCP", "22/22"), ("ingress", "TCP", "80/443"), ("ingress", "ICMP", "-1/-1"), ("egress", "ALL", "-1/-1")]
    ssh, web, icmp, out = perms
    assert (ssh["SourceCidrIp"], ssh["Policy"], ssh["Priority"], ssh["NicType"], ssh["Description"]) == (
        "10.0.0.0/8", "Accept", "1", "intranet", "ssh")
    assert ssh["SecurityGroupRuleId"].startswith("sgr-") and ssh["CreateTime"].endswith("Z")
    assert (web["Priority"], icmp["Policy"], out["DestCidrIp"]) == ("10", "Drop", "0.0.0.0/0")
    assert [p["Direction"] for p in rules(tenant, gid, direction="egress")] == ["egress"]
    assert body["NextToken"] == ""
    first = attr(tenant, gid, max_results=10)
    assert len(first["Permissions"]["Permission"]) == 4 and first["NextToken"] == ""
    assert groups(tenant)["SecurityGroups"]["SecurityGroup"][0]["RuleCount"] == 4

    # Revoke by the rule's fields and by its id.
    revoke(tenant, gid, ip_protocol="tcp", port_range="22/22", source_cidr_ip="10.0.0.0/8")
    revoke(tenant, gid, security_group_rule_id=[web["SecurityGroupRuleId"]])
    _m(tenant.client.revoke_security_group_egress(M.RevokeSecurityGroupEgressRequest(
        region_id=REGION, security_group_id=gid, ip_protocol="ALL", dest_cidr_ip="0.0.0.0/0")))
    assert [p["SecurityGroupRuleId"] for p in rules(tenant, gid)] == [icmp["SecurityGroupRuleId"]]

    _m(tenant.client.modify_security_group_attribute(M.ModifySecurityGroupAttributeRequest(
        region_id=REGION, security_group_id=gid, security_group_name="web2")))
    body = attr(tenant, gid)
    assert (body["SecurityGroupName"], body["Description"]) == ("web2", "web tier")
    delete(tenant, gid)
    assert groups(tenant)["TotalCount"] == 0
    err = catch(attr, tenant, gid)
    assert err.triple == (404, "InvalidSecurityGroupId.NotFound", "The specified SecurityGroupId does not exist.")


def test_instances_are_always_in_one_to_five_groups(tenant):
    g1, g2 = create(tenant, "one"), create(tenant, "two")
    a = tenant.run_instance(security_group_id=g1)
    assert instance_groups(tenant, a) == [g1]
    b = tenant.run_instance()
    default = instance_groups(tenant, b)
    assert len(default) == 1 and default[0] not in (g1, g2)
    body = groups(tenant, security_group_id=default[0])["SecurityGroups"]["SecurityGroup"][0]
    assert (body["SecurityGroupName"], body["EcsCount"]) == ("default", 1)
    c = tenant.run_instance()
    assert instance_groups(tenant, c) == default, "one default group per account and region"

    join(tenant, a, g2)
    assert instance_groups(tenant, a) == [g1, g2]
    assert tenant.call("DescribeInstanceAttribute", {"InstanceId": a})["SecurityGroupIds"]["SecurityGroupId"] == [g1, g2]
    listed = tenant.instances(security_group_id=g2)["Instances"]["Instance"]
    assert [i["InstanceId"] for i in listed] == [a]
    assert {g["SecurityGroupId"]: g["EcsCount"] for g in groups(tenant)["SecurityGroups"]["SecurityGroup"]}[g2] == 1

    err = catch(join, tenant, a, g2)
    assert err.triple == (403, "InvalidInstanceId.AlreadyExists", "The specified instance already exists in the specified security group.")
    leave(tenant, a, g1)
    assert instance_groups(tenant, a) == [g2]
    err = catch(leave, tenant, a, g2)
    assert err.triple == (403, "InstanceLastSecurityGroup", "The specified security group is the last security group for the instance.")
    err = catch(leave, tenant, a, g1)
    assert err.triple == (403, "InstanceNotInSecurityGroup", "The instance not in the group.")

    more = [create(tenant, f"g{n}") for n in range(4)]
    for g in more:
        join(tenant, a, g)
    assert len(instance_groups(tenant, a)) == 5
    err = catch(join, tenant, a, g1)
    assert err.triple == (400, "InstanceSecurityGroupLimitExceeded",
                          "Exceeding the allowed amount of security groups that an instance can be in.")
    err = catch(tenant.run_instance, security_group_ids=[g1, g2] + more)
    assert err.code == "InstanceSecurityGroupLimitExceeded"

    # A group with an instance in it, or named by another group's rule, is not deleted.
    err = catch(delete, tenant, g2)
    assert err.triple == (403, "DependencyViolation", "There is still instance(s) in the specified security group.")
    authorize(tenant, g2, ip_protocol="all", source_group_id=g1)
    err = catch(delete, tenant, g1)
    assert err.triple == (403, "DependencyViolation", "The specified security group has been authorized in another one.")
    src = rules(tenant, g2)[0]
    assert (src["SourceGroupId"], src["SourceGroupName"]) == (g1, "one")
    revoke(tenant, g2, ip_protocol="all", source_group_id=g1)
    delete(tenant, g1)

    # Once the instance is gone, its groups can go.
    tenant.delete_instance(a, force=True)
    for g in [g2] + more:
        delete(tenant, g)

    err = catch(tenant.run_instance, security_group_id="sg-nope")
    assert err.triple == (404, "InvalidSecurityGroupId.NotFound", "The specified SecurityGroupId does not exist.")


def test_join_and_leave_need_a_settled_instance(tenant):
    g1, g2 = create(tenant, "one"), create(tenant, "two")
    iid = tenant.run_instance(security_group_id=g1)
    tenant.server.timings(InstanceMs=3000)
    try:
        tenant.stop(iid, wait=False)
        err = catch(join, tenant, iid, g2)
        assert err.triple == (403, "IncorrectInstanceStatus", "The current status of the resource does not support this operation.")
    finally:
        tenant.server.timings(InstanceMs=50)
    tenant.wait_instance(iid, "Stopped")
    join(tenant, iid, g2)
    leave(tenant, iid, g1)
    err = catch(join, tenant, "i-nope", g1)
    assert (err.status, err.code) == (404, "InvalidInstanceId.NotFound")


def test_groups_are_per_account(server, tenant):
    other = server.tenant()
    mine = create(tenant, "mine")
    theirs = create(other, "theirs")
    assert ids(groups(other)) == [theirs]
    for call in (attr, delete):
        err = catch(call, other, mine)
        assert (err.status, err.code) == (404, "InvalidSecurityGroupId.NotFound")
    err = catch(authorize, other, theirs, ip_protocol="all", source_group_id=mine)
    assert err.triple == (404, "InvalidSourceGroupId.NotFound", "The SourceGroupId provided does not exist in our records.")
    err = catch(authorize_egress, other, theirs, ip_protocol="all", dest_group_id=mine)
    assert (err.status, err.code) == (404, "InvalidDestGroupId.NotFound")
    iid = other.run_instance()
    err = catch(join, other, iid, mine)
    assert (err.status, err.code) == (404, "InvalidSecurityGroupId.NotFound")
    err = catch(join, tenant, iid, mine)
    assert (err.status, err.code) == (404, "InvalidInstanceId.NotFound")


def test_describe_pages_both_ways(tenant):
    vpc_1 = new_vpc(tenant)
    made = [create(tenant, f"p{n}", vpc_id=vpc_1 if n % 2 else None) for n in range(5)]
    seen = []
    for page in (1, 2, 3):
        body = groups(tenant, page_number=page, page_size=2)
        assert body["TotalCount"] == 5 and (body["PageNumber"], body["PageSize"]) == (page, 2)
        seen += ids(body)
    assert seen == made
    body, seen = groups(tenant, max_results=2), []
    while True:
        seen += ids(body)
        if not body["NextToken"]:
            break
        body = groups(tenant, max_results=2, next_token=body["NextToken"])
    assert seen == made
    assert ids(groups(tenant, vpc_id=vpc_1)) == made[1::2]
    assert ids(groups(tenant, network_type="classic")) == made[0::2]
    assert ids(groups(tenant, security_group_name="p3")) == [made[3]]
    assert ids(groups(tenant, security_group_name="p", fuzzy_query=True)) == made
    assert ids(groups(tenant, security_group_ids=f'["{made[0]}", "{made[4]}"]')) == [made[0], made[4]]
    err = catch(groups, tenant, page_size=51)
    assert err.triple == (400, "InvalidParameter", 'The specified parameter "PageSize" is not valid.')
    err = catch(groups, tenant, max_results=2, next_token="forged")
    assert err.code == "InvalidParameter"


def test_documented_error_rows(tenant):
    gid = create(tenant, "errs", vpc_id=new_vpc(tenant))
    other_vpc = create(tenant, "elsewhere", vpc_id=new_vpc(tenant, "10.1.0.0/16"))
    err = catch(create, tenant, "nowhere", vpc_id="vpc-nope")
    assert err.triple == (404, "InvalidVpcId.NotFound", "Specified VPC does not exist.")
    for bad, want in [
        ({"security_group_name": "1bad"}, (400, "InvalidSecurityGroupName.Malformed", "Specified security group name is not valid.")),
        ({"description": "x"}, (400, "InvalidDescription.Malformed", 'The specified parameter "Description" is not valid.')),
        ({"security_group_type": "vip"}, (400, "InvalidParams.GroupType", "The specified security group type is not valid.")),
    ]:
        err = catch(tenant.client.create_security_group, M.CreateSecurityGroupRequest(region_id=REGION, **bad))
        assert err.triple == want, bad

    base = {"ip_protocol": "tcp", "port_range": "22/22", "source_cidr_ip": "10.0.0.0/8"}
    for change, want in [
        ({"ip_protocol": "sctp"}, (400, "InvalidIpProtocol.ValueNotSupported", "The specified IpProtocol does not exist.")),
        ({"port_range": "0/22"}, (400, "InvalidIpPortRange.Malformed", 'The specified parameter "PortRange" is not valid.')),
        ({"port_range": "22-23"}, (400, "InvalidIpPortRange.Malformed", 'The specified parameter "PortRange" is not valid.')),
        ({"port_range": "-1/-1"}, (400, "OperationDenied", "The specified IpProtocol does not exist or IpProtocol and PortRange do not match.")),
        ({"source_cidr_ip": "10.0.0.0/33"}, (400, "InvalidSourceCidrIp.Malformed", 'The specified parameter "SourceCidrIp" is not valid.')),
        ({"dest_cidr_ip": "10.0.0"}, (400, "InvalidDestCidrIp.Malformed", 'The specified parameter "DestCidrIp" is not valid.')),
        ({"policy": "allow"}, (400, "InvalidPolicy.Malformed", 'The specified parameter "Policy" is not valid.')),
        ({"priority": "101"}, (400, "InvalidPriority.Malformed", 'The specified parameter "Priority" is not valid.')),
        ({"nic_type": "wifi"}, (400, "InvalidNicType.ValueNotSupported", "The specified NicType does not exist.")),
        ({"description": "http://x"}, (400, "InvalidSecurityGroupDiscription.Malformed", "The specified security group rule description is not valid.")),
        ({"source_cidr_ip": None}, (400, "MissingParameter", 'The input parameter "SourceGroupId" or "SourceCidrIp" cannot be both blank.')),
        ({"source_cidr_ip": None, "source_group_id": gid}, (400, "InvalidParamter.Conflict", "The specified SecurityGroupId should be different from the SourceGroupId.")),
        ({"source_cidr_ip": None, "source_group_id": other_vpc}, (400, "InvalidSourceGroupId.Mismatch", "Specified security group and source group are not in the same VPC.")),
    ]:
        err = catch(authorize, tenant, gid, **{**base, **change})
        assert err.triple == want, change
    err = catch(authorize, tenant, gid, ip_protocol="tcp", source_cidr_ip="1.2.3.4")
    assert err.triple == (400, "MissingParameter", 'The input parameter "PortRange" that is mandatory for processing this request is not supplied.')
    P = M.AuthorizeSecurityGroupRequestPermissions
    err = catch(authorize, tenant, gid, ip_protocol="tcp", permissions=[P(ip_protocol="tcp", port_range="1/2", source_cidr_ip="1.2.3.4")])
    assert err.triple == (400, "InvalidParam.Permissions", "The specified parameter Permissions cannot coexist with other parameters.")
    twice = [P(ip_protocol="tcp", port_range="1/2", source_cidr_ip="1.2.3.4")] * 2
    err = catch(authorize, tenant, gid, permissions=twice)
    assert err.triple == (400, "InvalidParam.DuplicatePermissions", "There are duplicate permissions in the specified parameter Permissions.")
    err = catch(authorize_egress, tenant, gid, ip_protocol="all", source_cidr_ip="1.2.3.4")
    assert err.triple == (400, "MissingParameter", 'The input parameter "DestGroupId" or "DestCidrIp" cannot be both blank.')

    err = catch(revoke, tenant, gid, **base)
    assert err.triple == (403, "InvalidGroupAuthItem.NotFound", "Specified group authorized item does not exist in our records.")
    err = catch(revoke, tenant, gid, security_group_rule_id=["sgr-nope"])
    assert err.triple == (404, "InvalidSecurityGroupRuleId.NotFound", "The specified SecurityGroupRuleId is not exists.")

    advanced = create(tenant, "adv", security_group_type="enterprise")
    assert attr(tenant, advanced)["InnerAccessPolicy"] == "Drop"
    err = catch(authorize, tenant, advanced, **base, policy="drop")
    assert err.triple == (400, "InvalidGroupParameter.OperationDenied",
                          "The attributes Policy, SourceGroupId, DestGroupId of enterprise level security groups are not allowed to be set or modified.")
    authorize(tenant, advanced, **base)

    # 100 rules a group.
    full = [P(ip_protocol="tcp", port_range=f"{n}/{n}", source_cidr_ip="10.0.0.0/8") for n in range(1, 101)]
    authorize(tenant, gid, permissions=full)
    err = catch(authorize, tenant, gid, ip_protocol="udp", port_range="53/53", source_cidr_ip="10.0.0.0/8")
    assert err.triple == (403, "AuthorizationLimitExceed", "The maximum number of authorization rules in the security group is exceeded.")
    assert len(rules(tenant, gid)) == 100
    page = attr(tenant, gid, max_results=30)
    assert len(page["Permissions"]["Permission"]) == 30 and page["NextToken"]

    # 100 groups a region.
    have = groups(tenant)["TotalCount"]
    for n in range(100 - have):
        create(tenant, f"q{n}")
    err = catch(create, tenant, "one-too-many")
    assert err.triple == (403, "QuotaExceed.SecurityGroup", "The maximum number of security groups is reached.")


def test_xml_shapes(server, tenant):
    vpc_x = new_vpc(tenant)
    gid = create(tenant, "xml", vpc_id=vpc_x)
    authorize(tenant, gid, ip_protocol="tcp", port_range="22/22", source_cidr_ip="10.0.0.0/8")

    def xml(action, params):
        r = raw_v1(server, action, {"RegionId": REGION, **params}, ak=tenant.ak, secret=tenant.secret, fmt="XML")
        assert r.status == 200, r.text
        root = ET.fromstring(r.body)
        assert root.tag == f"{action}Response" and root.findtext("RequestId")
        return root

    root = xml("DescribeSecurityGroups", {})
    sg = root.findall("./SecurityGroups/SecurityGroup")
    assert len(sg) == 1 and sg[0].findtext("SecurityGroupId") == gid and sg[0].findtext("VpcId") == vpc_x
    assert (root.findtext("TotalCount"), root.findtext("RegionId")) == ("1", REGION)
    root = xml("DescribeSecurityGroupAttribute", {"SecurityGroupId": gid})
    perm = root.findall("./Permissions/Permission")
    assert len(perm) == 1
    assert (perm[0].findtext("IpProtocol"), perm[0].findtext("PortRange"), perm[0].findtext("SourceCidrIp")) == (
        "TCP", "22/22", "10.0.0.0/8")
    assert root.findtext("SecurityGroupId") == gid and root.findtext("InnerAccessPolicy") == "Accept"
    root = xml("CreateSecurityGroup", {"SecurityGroupName": "x2"})
    assert root.findtext("SecurityGroupId").startswith("sg-")
