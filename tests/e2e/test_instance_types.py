"""DescribeInstanceTypes and DescribeInstanceTypeFamilies (#10 item 1), as Terraform's data
sources and libcloud's list_sizes read them: every field the SDK models, the filters, and
NextToken paging; RunInstances refuses a type not on the list."""

from __future__ import annotations

import inspect
import re

from alibabacloud_ecs20140526 import models as m
from alibabacloud_ecs20140526.models import _describe_instance_types_response_body as body

from support import REGION, catch


def test_describe_instance_types(server, tenant):
    got = tenant.client.describe_instance_types(m.DescribeInstanceTypesRequest()).body.to_map()
    types = got["InstanceTypes"]["InstanceType"]
    assert len(types) >= 10 and got["NextToken"] == ""
    wanted = set(re.findall(r"result\['(\w+)'\]",
                            inspect.getsource(body.DescribeInstanceTypesResponseBodyInstanceTypesInstanceType.to_map)))
    for t in types:
        assert wanted - set(t) == set(), (t["InstanceTypeId"], sorted(wanted - set(t)))
    g7 = {t["InstanceTypeId"]: t for t in types}["ecs.g7.xlarge"]
    assert (g7["CpuCoreCount"], g7["MemorySize"], g7["InstanceTypeFamily"]) == (4, 16.0, "ecs.g7")
    # The same numbers DescribeInstances reports for an instance of that type.
    iid = tenant.run_instance(itype="ecs.g7.xlarge")
    inst = tenant.instance(iid)
    assert (inst["Cpu"], inst["Memory"]) == (4, 16384)

    fam = tenant.client.describe_instance_types(m.DescribeInstanceTypesRequest(instance_type_family="ecs.g7")).body.to_map()
    assert {t["InstanceTypeId"] for t in fam["InstanceTypes"]["InstanceType"]} == {"ecs.g7.large", "ecs.g7.xlarge", "ecs.g7.2xlarge"}
    big = tenant.call("DescribeInstanceTypes", {"MinimumCpuCoreCount": "4", "MaximumMemorySize": "16"})
    assert {t["InstanceTypeId"] for t in big["InstanceTypes"]["InstanceType"]} == {"ecs.c7.xlarge", "ecs.g7.xlarge", "ecs.g8i.xlarge"}
    named = tenant.call("DescribeInstanceTypes", {"InstanceTypes.1": "ecs.c7.large", "InstanceTypes.2": "ecs.r7.large"})
    assert sorted(t["InstanceTypeId"] for t in named["InstanceTypes"]["InstanceType"]) == ["ecs.c7.large", "ecs.r7.large"]
    # Paging by NextToken covers the list once.
    seen, token = [], None
    while True:
        page = tenant.client.describe_instance_types(m.DescribeInstanceTypesRequest(max_results=5, next_token=token)).body.to_map()
        seen += [t["InstanceTypeId"] for t in page["InstanceTypes"]["InstanceType"]]
        token = page["NextToken"] or None
        if token is None:
            break
    assert seen == [t["InstanceTypeId"] for t in types]
    err = catch(tenant.call, "DescribeInstanceTypes", {"NextToken": "ecs.nosuch"})
    assert (err.status, err.code) == (400, "InvalidParameter")
    err = catch(tenant.run_instances, 1, itype="ecs.nosuch.large")
    assert (err.status, err.code) == (400, "InvalidInstanceType.ValueNotSupported")


def test_describe_instance_type_families(tenant):
    got = tenant.client.describe_instance_type_families(m.DescribeInstanceTypeFamiliesRequest(region_id=REGION)).body.to_map()
    fams = {f["InstanceTypeFamilyId"]: f["Generation"] for f in got["InstanceTypeFamilies"]["InstanceTypeFamily"]}
    assert fams["ecs.g7"] == "ecs-5" and "ecs.c6" in fams
    five = tenant.client.describe_instance_type_families(
        m.DescribeInstanceTypeFamiliesRequest(region_id=REGION, generation="ecs-5")).body.to_map()
    assert all(f["Generation"] == "ecs-5" for f in five["InstanceTypeFamilies"]["InstanceTypeFamily"])
    assert "ecs.c6" not in {f["InstanceTypeFamilyId"] for f in five["InstanceTypeFamilies"]["InstanceTypeFamily"]}
