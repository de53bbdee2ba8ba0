//! The one registry of ECS error codes. Clients match on `Code` strings, so every code the
//! server can answer is declared here once, with its HTTP status and documented message.

use std::fmt;

macro_rules! registry {
    ($($variant:ident => ($status:literal, $code:literal, $msg:literal)),* $(,)?) => {
        /// A stable ECS error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code { $($variant),* }

        impl Code {
            /// Every code, for documentation and for the test that the set never shrinks.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The wire `Code` string.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code),* }
            }

            /// The HTTP status this code is answered with.
            pub fn status(self) -> u16 {
                match self { $(Code::$variant => $status),* }
            }

            /// The documented message (templates hold `{}` where a name goes).
            pub fn message(self) -> &'static str {
                match self { $(Code::$variant => $msg),* }
            }
        }
    };
}

registry! {
    // Gateway and protocol errors (notes §3.3).
    MissingParameter => (400, "MissingParameter", "The input parameter \"{}\" that is mandatory for processing this request is not supplied."),
    InvalidParameter => (400, "InvalidParameter", "The specified parameter \"{}\" is not valid."),
    SignatureDoesNotMatch => (400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation. server string to sign is:{}"),
    IncompleteSignature => (400, "IncompleteSignature", "The request signature does not conform to Aliyun standards."),
    InvalidTimeStampExpired => (400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."),
    InvalidTimeStampFormat => (400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."),
    IllegalTimestamp => (400, "IllegalTimestamp", "The input parameter \"Timestamp\" that is mandatory for processing this request is not supplied."),
    SignatureNonceUsed => (400, "SignatureNonceUsed", "Specified signature nonce was used already."),
    InvalidSignatureMethod => (400, "InvalidSignatureMethod", "Specified signature method is not valid."),
    InvalidVersion => (400, "InvalidVersion", "Specified parameter Version is not valid."),
    InvalidAccessKeyIdNotFound => (404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."),
    InvalidAccessKeyIdInactive => (400, "InvalidAccessKeyId.Inactive", "Specified access key is disabled."),
    InvalidActionNotFound => (404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."),
    UnsupportedHttpMethod => (403, "UnsupportedHTTPMethod", "This http method is not supported."),
    InvalidOwner => (400, "InvalidOwner", "OwnerId and OwnerAccount can't be used at one API access."),
    DryRunOperation => (400, "DryRunOperation", "Request validation has been passed with DryRun flag set."),
    InternalError => (500, "InternalError", "The request processing has failed due to some unknown error."),
    InternalFailure => (500, "InternalError", "The request processing has failed due to some unknown error, exception or failure."),
    ServiceUnavailable => (503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."),

    // ResetDisk's table (ResetDisk.txt), shared by the other disk operations.
    DiskCategoryOperationNotSupported => (400, "DiskCategory.OperationNotSupported", "The operation is not supported to the specified disk due to its disk category"),
    InvalidRegionIdMalFormed => (400, "InvalidRegionId.MalFormed", "The specified RegionId is not valid"),
    IncorrectDiskStatus => (403, "IncorrectDiskStatus", "The current disk status does not support this operation."),
    IncorrectInstanceStatus => (403, "IncorrectInstanceStatus", "The current status of the resource does not support this operation."),
    InstanceLockedForSecurity => (403, "InstanceLockedForSecurity", "The instance is locked due to security."),
    InvalidParameterMismatch => (403, "InvalidParameter.Mismatch", "The specified snapshot is not created from the specified disk."),
    InvalidSnapshotTooOld => (403, "InvalidSnapshot.TooOld", "The snapshotId is created before 2013-07-15, it cannot be restored since the first time the disk detached."),
    InstanceExpiredOrInArrears => (403, "InstanceExpiredOrInArrears", "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode)."),
    OperationDenied => (403, "OperationDenied", "The specified snapshot dees not support ResetDisk."),
    InvalidSnapshotIdNotReady => (403, "InvalidSnapshotId.NotReady", "The specified snapshot has not completed yet."),
    NotEnoughBalance => (403, "InvalidAccountStatus.NotEnoughBalance", "Your account does not have enough balance."),
    SnapshotServiceUnavailable => (403, "InvalidAccountStatus.SnapshotServiceUnavailable", "Snapshot service has not been opened yet."),
    OperationConflict => (403, "Operation.Conflict", "The operation may conflicts with others."),
    UserNotInTheWhiteList => (403, "UserNotInTheWhiteList", "The user is not in disk white list."),
    KmsCmkNotEnabled => (403, "InvalidParameter.KMSKeyId.CMKNotEnabled", "The CMK needs to be enabled."),
    KmsUnauthorized => (403, "InvalidParameter.KMSKeyId.KMSUnauthorized", "ECS service have no right to access your KMS."),
    KmsNotFound => (404, "InvalidParameter.KMSKeyId.NotFound", "The specified KMSKeyId does not exist."),
    InvalidDiskIdNotFound => (404, "InvalidDiskId.NotFound", "The specified disk does not exist."),
    DiskNotFound => (404, "Disk.NotFound", "The specified disk does not exist."),
    InvalidSnapshotIdNotFound => (404, "InvalidSnapshotId.NotFound", "The specified SnapshotId does not exist."),
    InvalidInstanceIdNotFound => (404, "InvalidInstanceId.NotFound", "The specified InstanceId does not exist."),

    // Companion operations (notes §5).
    InvalidZoneIdNotFound => (404, "InvalidZoneId.NotFound", "The specified zone does not exist."),
    InvalidDiskSizeTooSmall => (403, "InvalidDiskSize.TooSmall", "Specified disk size is less than the size of snapshot."),
    InvalidDiskSizeValueNotSupported => (400, "InvalidDiskSize.ValueNotSupported", "The specified parameter \"Size\" is not valid."),
    InvalidDiskCategoryValueNotSupported => (400, "InvalidDiskCategory.ValueNotSupported", "The specified parameter \"DiskCategory\" is not valid."),
    MissingSizeOrSnapshot => (400, "MissingParameter", "The input parameter either \"SnapshotId\" or \"Size\" should be specified."),
    DiskStillAttached => (403, "DiskStillAttached", "The disk is still attached to the disk."),
    DiskCreatingSnapshot => (403, "DiskCreatingSnapshot", "A snapshot of this disk is being created."),
    IncorrectDiskStatusCreatingSnapshot => (403, "IncorrectDiskStatus.CreatingSnapshot", "A previous snapshot creation is in process."),
    QuotaExceedSnapshot => (403, "QuotaExceed.Snapshot", "The snapshot quota of the disk is exceeded."),
    InstanceDiskLimitExceeded => (403, "InstanceDiskLimitExceeded", "The amount of the disk on instance in question reach its limits."),
    InvalidDiskIdsMalformed => (403, "InvalidDiskIds.Malformed", "The specified parameter DiskIds is not valid."),
    InvalidInstanceTypeValueNotSupported => (400, "InvalidInstanceType.ValueNotSupported", "The specified InstanceType beyond the permitted range."),
    InvalidImageIdNotFound => (404, "InvalidImageId.NotFound", "The specified ImageId does not exist."),
    ParameterInvalidAutoSnapshotPolicyId => (403, "ParameterInvalid", "The specified AutoSnapshotPolicyId parameter is invalid."),
    ParameterInvalidDiskIds => (403, "ParameterInvalid", "The specified DiskIds are invalid."),
    PartofDiskCategoryOperationNotSupported => (400, "PartofDiskCategory.OperationNotSupported", "The types of some disks in the disk list do not support creating snapshots."),
    InvalidTaskIdNotFound => (404, "InvalidTaskId.NotFound", "The specified task does not exist."),
    InvalidSnapshotGroupIdNotFound => (404, "InvalidSnapshotGroupId.NotFound", "The specified snapshot group does not exist."),
    InvalidOssBucketNotFound => (404, "InvalidOSSBucket.NotFound", "The specified OSS bucket does not exist."),
    InvalidOssObjectNotFound => (404, "InvalidOSSObject.NotFound", "The specified OSS object does not exist."),
    InvalidImageNameMalformed => (400, "InvalidImageName.Malformed", "The specified image name is wrongly formed."),
    ImageNotAvailable => (403, "InvalidImageId.NotAvailable", "The specified image is not Available: it is still being created or its creation failed."),
    InvalidSystemDiskCategoryValueNotSupported => (400, "InvalidSystemDiskCategory.ValueNotSupported", "The specified parameter \"SystemDisk.Category\" is not valid."),
    InvalidDataDiskCategoryValueNotSupported => (400, "InvalidDataDiskCategory.ValueNotSupported", "The specified parameter \"DataDisk.n.Category\" is not valid."),
    SnapshotCreatedImage => (403, "SnapshotCreatedImage", "The snapshot has been used to create user defined image(s)."),
    SnapshotCreatedDisk => (403, "SnapshotCreatedDisk", "The snapshot has been used to create disk(s)."),
    InvalidOperationDeletionProtection => (403, "InvalidOperation.DeletionProtection", "The instance is protected from deletion."),
    DiskError => (403, "DiskError", "IncorrectDiskStatus."),
    ImageIsUsedByInstance => (403, "InvalidImageId.IncorrectStatus", "The image is being used by instances; delete it with Force."),

    // Naming rules (CreateDisk's error table).
    InvalidDiskNameMalformed => (400, "InvalidDiskName.Malformed", "The specified disk name is wrongly formed."),
    InvalidDescriptionMalformed => (400, "InvalidDescription.Malformed", "The specified description is wrongly formed."),
    // RunInstances' and CreateInstance's rows for the same rules.
    InvalidInstanceNameMalformed => (400, "InvalidInstanceName.Malformed", "The specified parameter \"InstanceName\" is not valid."),
    InvalidInstanceDescriptionMalformed => (400, "InvalidDescription.Malformed", "The specified parameter \"Description\" is not valid."),
    InvalidUserDataSizeExceeded => (400, "InvalidUserData.SizeExceeded", "The specified parameter \"UserData\" exceeds the size."),
    InvalidUserDataBase64FormatInvalid => (400, "InvalidUserData.Base64FormatInvalid", "The specified parameter UserData must be base64 encoded."),
    InvalidSpecDiskNameMalformed => (400, "InvalidDiskName.Malformed", "The specified parameter \"SystemDisk.DiskName or DataDisk.n.DiskName\" is not valid."),

    // ModifyDiskAttribute's table.
    NoAttributeToModify => (400, "NoAttributeToModify", "No attribute to be modified in this request."),
    DiskNotPortable => (403, "DiskNotPortable", "The specified disk is not a portable disk."),

    // ResizeDisk's table (API reference "ResizeDisk", error codes). InvalidDiskSize.TooSmall
    // and OperationDenied carry ResizeDisk's own messages there.
    ResizeDiskSizeTooSmall => (403, "InvalidDiskSize.TooSmall", "Specified new disk size is less than the original disk size."),
    InvalidDiskSizeTooLarge => (403, "InvalidDiskSize.TooLarge", "Specified new disk size is beyond the permitted range."),
    OperationDeniedDiskType => (403, "OperationDenied", "The type of the disk does not support the operation."),
    OperationDeniedDiskStatus => (403, "OperationDenied", "The status of the disk or the instance that the disk is attaching with does not support the operation."),
    DiskCreatingSnapshotNotCompleted => (403, "DiskCreatingSnapshot", "The operation is denied due to a snapshot of the specified disk is not completed yet."),
    DiskInArrears => (403, "DiskInArrears", "The specified operation is denied as your disk owing fee."),
    InvalidParamType => (400, "InvalidParam.Type", "The specified type is not supported."),
    IncorrectInstanceStatusOnlineResize => (403, "IncorrectInstanceStatus", "The current status of the resource does not support resize online."),
    IncorrectDiskStatusOnlineResize => (403, "IncorrectDiskStatus", "The current status of the resource does not support resize online"),

    // ReInitDisk's table (API reference "ReInitDisk", error codes).
    InvalidPasswordMalformed => (400, "InvalidPassword.Malformed", "The specified parameter \"Password\" is not valid."),
    ReInitSnapshotTooOld => (403, "InvalidSnapshot.TooOld", "The disk is created from a snapshotId made before 2013-07-15, it cannot be re-initiated the specified disk any more since the detached first time."),
    InvalidSourceSnapshot => (403, "InvalidSourceSnapshot", "The snapshot which is used to create the specified disk has been deleted."),
    InvalidDiskIdOperationNotSupported => (404, "InvalidDiskId.OperationNotSupported", "The operation is not supported due to image not exist."),

    // Networks (VPC API 2016-04-28: CreateVpc, CreateVSwitch, DeleteVpc, DeleteVSwitch,
    // ModifyVpcAttribute and the Describe* by id; RunInstances' VSwitchId and PrivateIpAddress).
    InvalidCidrBlockMalformed => (400, "InvalidCidrBlock.Malformed", "Specified CIDR block is not valid."),
    InvalidCidrBlockOverlapped => (400, "InvalidCidrBlock.Overlapped", "Specified CIDR block overlapped with other subnets."),
    InvalidVSwitchCidrNotInVpc => (400, "InvalidParameter", "Specified CIDR block is not valid in VPC."),
    InvalidVpcNameMalformed => (400, "InvalidVpcName.Malformed", "Specified VPC name is not valid."),
    InvalidVpcDescriptionMalformed => (400, "InvalidVpcDiscription.Malformed", "Specified VPC description is not valid."),
    InvalidVSwitchNameMalformed => (400, "InvalidVSwitchName.Malformed", "Specified virtual switch name is not valid."),
    InvalidVSwitchDescriptionMalformed => (400, "InvalidVSwitchDiscription.Malformed", "Specified virtual switch description is not valid."),
    InvalidVpcIdNotFound => (404, "InvalidVpcId.NotFound", "Specified VPC does not exist."),
    InvalidVSwitchIdNotFound => (404, "InvalidVSwitchId.NotFound", "VSwitch not exist."),
    IncorrectVpcStatus => (400, "IncorrectVpcStatus", "Current VPC status does not support this operation."),
    IncorrectVSwitchStatus => (400, "IncorrectVSwitchStatus", "The current virtual switch status does not support this operation."),
    DependencyViolationVSwitch => (400, "DependencyViolation", "Specified object has dependent resources."),
    DependencyViolationVpc => (400, "DependencyViolation.VSwitch", "Specified object has dependent resources"),
    DependencyViolationSecurityGroup => (400, "DependencyViolation.SecurityGroup", "Specified object has dependent resources"),
    DependencyViolationVpcInstance => (400, "DependencyViolation.Instance", "Specified object has dependent resources"),
    InvalidVSwitchMaskLength => (400, "InvalidCirdrBlock.MaskLength", "Specified CIDR block is not valid ."),
    InvalidVpcIdNumberNotSupported => (400, "InvalidVpcIdNumber.NotSupported", "The number of vpcIds exceeds the limit."),
    QuotaExceededVSwitch => (400, "QuotaExceeded.VSwitch", "Virtual switch quota exceeded."),
    QuotaExceededVpc => (400, "QuotaExceeded.Vpc", "VPC quota exceeded."),
    InvalidVpcCidrShrink => (400, "InvalidCidrBlock.Malformed", "The new CIDR block must contain the old one and every vSwitch."),
    InvalidPrivateIpAddressMalformed => (400, "InvalidPrivateIpAddress.Malformed", "Specified private IP address is malformed."),
    InvalidPrivateIpAddress => (400, "InvalidPrivateIpAddress", "Specified private IP address is not in the CIDR block of virtual switch."),
    InvalidPrivateIpAddressDuplicated => (400, "InvalidPrivateIpAddress.Duplicated", "Specified private IP address is duplicated."),
    InvalidVSwitchIdZoneMismatch => (400, "InvalidParameter.Mismatch", "Specified virtual switch is not in the specified zone."),
    InvalidVSwitchIpNotEnough => (400, "InvalidVSwitchId.IpNotEnough", "The specified VSwitch has not enough IP address."),

    // Instance settings and resource groups (ModifyInstanceAttribute, JoinResourceGroup).
    InvalidInternetChargeTypeValueNotSupported => (400, "InvalidInternetChargeType.ValueNotSupported", "The specified InternetChargeType is invalid."),
    InvalidLaunchTemplateNotFound => (404, "InvalidLaunchTemplate.NotFound", "The specified launch template does not exist."),
    InvalidHostNameMalformed => (400, "InvalidHostName.Malformed", "The specified parameter \"HostName\" is not valid."),
    InvalidResourceGroupIdNotFound => (404, "InvalidResourceGroupId.NotFound", "The specified ResourceGroupId does not exist."),

    // Image copies and sharing (API reference CopyImage, ModifyImageSharePermission and
    // DeleteImage, error codes; "Forbbiden" and "Deined" are spelled as documented).
    InvalidDestinationImageNameMalformed => (400, "InvalidImageName.Malformed", "The specified destination Image name is wrongly formed."),
    InvalidDestinationDescriptionMalformed => (400, "InvalidDescription.Malformed", "The specified destination description is wrongly formed."),
    InvalidParameterEncryptedIllegal => (400, "InvalidParameter.EncryptedIllegal", "The specified parameter Encrypted must be true when kmsKeyId is not empty."),
    DestinationRegionNotFound => (400, "DestinationRegion.NotFound", "The destination region not found"),
    IncorrectImageStatusCopy => (400, "IncorrectImageStatus", "The image not available."),
    OperationDeniedSameRegionOnly => (403, "OperationDenied.SameRegionOnly", "The image shared from others can not be copied to another region directly."),
    OperationDeniedImageCopying => (403, "OperationDenied.ImageCopying", "The Image is coping."),
    ImageUseShared => (403, "ImageUseShared", "The specified image has been shared to others."),
    IncorrectImageStatusShare => (400, "IncorrectImageStatus", "The image is not available."),
    InvalidAccountNotFound => (404, "InvalidAccount.NotFound", "The specified parameter \"AddAccount.n\" or \"RemoveAccount.n\" does not exist."),
    InvalidAccountForbbiden => (404, "InvalidAccount.Forbbiden", "The specified Account does not yourself."),
    QuotaExceedShareImageUser => (403, "QuotaExceed.ShareImageUser", "The shared Image user Quota exceeds."),
    OperationDeinedEncryptedSnapshot => (403, "OperationDeined.EncryptedSnapshot", "The image contains encrypted snapshots, which do not support share."),

    // Idempotence (notes §3.3, ECS "How to ensure idempotence"): a ClientToken reused with
    // other parameters.
    IdempotentParameterMismatch => (400, "IdempotentParameterMismatch", "The request is retried with updated parameters."),

    // Fair sharing (notes §3.3 Throttling; the QuotaExceed rows of CreateDisk, RunInstances
    // and CreateSnapshot): an account over its request rate or its resource quota.
    Throttling => (400, "Throttling", "Request was denied due to request throttling."),
    ThrottlingUser => (400, "Throttling.User", "Request was denied due to user flow control."),
    QuotaExceedPortableCloudDisk => (403, "QuotaExceed.PortableCloudDisk", "The quota of portable cloud disk exceeds."),
    QuotaExceedElasticQuota => (403, "QuotaExceed.ElasticQuota", "No additional quota is available for the specified ECS instance type."),
    QuotaExceedAccountSnapshot => (403, "QuotaExceed.Snapshot", "The snapshot quota exceeds."),

    // Tags (the Tag.N rows of CreateDisk, CreateSnapshot, RunInstances, TagResources).
    InvalidTagCount => (400, "InvalidTagCount", "The specified tags are beyond the permitted range."),
    InvalidTagKeyMalformed => (400, "InvalidTagKey.Malformed", "The specified Tag.n.Key is not valid."),
    InvalidTagValueMalformed => (400, "InvalidTagValue.Malformed", "The specified Tag.n.Value is not valid."),
    InvalidTagMismatch => (400, "InvalidTag.Mismatch", "The specified Tag.n.Key and Tag.n.Value are not match."),
    InvalidResourceTypeNotFound => (400, "InvalidResourceType.NotFound", "The ResourceType provided does not exist in our records."),
    InvalidResourceIdNotFound => (404, "InvalidResourceId.NotFound", "The specified ResourceIds are not found in our records."),
    InvalidResourceIdNotSupported => (403, "InvalidResourceId.NotSupported", "The specified ResourceId does not support tagging."),

    // SSH key pairs (the error tables of CreateKeyPair, ImportKeyPair, AttachKeyPair,
    // DetachKeyPair, DeleteKeyPairs and the KeyPairName row of RunInstances).
    InvalidKeyPairNameMalformed => (400, "InvalidKeyPairName.Malformed", "Specified Key Pair name is not valid."),
    KeyPairAlreadyExist => (400, "KeyPair.AlreadyExist", "The key pair already exist."),
    QuotaExceedKeyPair => (403, "QuotaExceed.KeyPair", "The key pair quota exceeds."),
    InvalidPublicKeyBodyMalformed => (400, "InvalidPublicKeyBody.Malformed", "The PublicKeyBody format is not supported."),
    InvalidKeyPairNameNotFound => (400, "InvalidKeyPairName.NotFound", "The specified KeyPairName does not exist in our records."),
    RunKeyPairNameNotFound => (404, "InvalidKeyPairName.NotFound", "The specified parameter \"KeyPairName\" does not exist in our records."),
    InvalidInstanceIdsValueNotSupported => (400, "InvalidInstanceIds.ValueNotSupported", "The specified parameter InstanceIds is not valid."),
    InstanceKeyPairLimitExceeded => (403, "InstanceKeyPairLimitExceeded", "The specified instances are beyond the permitted range."),
    DeleteKeyPairsLimitExceeded => (403, "InstanceKeyPairLimitExceeded", "Exceeding the allowed amount of instance which will be deleted."),
    InvalidKeyPairNamesValueNotSupported => (400, "InvalidKeyPairNames.ValueNotSupported", "The specified parameter \"KeyPairNames\" is not valid."),
    KeypairAlreadyAttachedInstance => (400, "InvalidParameter.KeypairAlreadyAttachedInstance", "The specified parameter \"KeyPairNames\" attached to instances can not be deleted."),
    // Not in DeleteKeyPairs' table; the code the Terraform provider takes as "already gone".
    InvalidKeyPairNotFound => (404, "InvalidKeyPair.NotFound", "The specified KeyPair does not exist."),

    // Security groups (the error tables of CreateSecurityGroup, DeleteSecurityGroup,
    // Authorize/RevokeSecurityGroup(Egress), Join/LeaveSecurityGroup). The Description row is
    // `InvalidInstanceDescriptionMalformed` (the same code and message).
    InvalidSecurityGroupIdNotFound => (404, "InvalidSecurityGroupId.NotFound", "The specified SecurityGroupId does not exist."),
    InvalidSecurityGroupNameMalformed => (400, "InvalidSecurityGroupName.Malformed", "Specified security group name is not valid."),
    QuotaExceedSecurityGroup => (403, "QuotaExceed.SecurityGroup", "The maximum number of security groups is reached."),
    InvalidParamsGroupType => (400, "InvalidParams.GroupType", "The specified security group type is not valid."),
    DependencyViolationInstances => (403, "DependencyViolation", "There is still instance(s) in the specified security group."),
    DependencyViolationReferenced => (403, "DependencyViolation", "The specified security group has been authorized in another one."),
    InvalidIpProtocolValueNotSupported => (400, "InvalidIpProtocol.ValueNotSupported", "The specified IpProtocol does not exist."),
    InvalidIpPortRangeMalformed => (400, "InvalidIpPortRange.Malformed", "The specified parameter \"PortRange\" is not valid."),
    OperationDeniedProtocolPort => (400, "OperationDenied", "The specified IpProtocol does not exist or IpProtocol and PortRange do not match."),
    InvalidSourceCidrIpMalformed => (400, "InvalidSourceCidrIp.Malformed", "The specified parameter \"SourceCidrIp\" is not valid."),
    InvalidDestCidrIpMalformed => (400, "InvalidDestCidrIp.Malformed", "The specified parameter \"DestCidrIp\" is not valid."),
    InvalidParameterIpv6CidrIp => (400, "InvalidParameter.Ipv6CidrIp", "The specified Ipv6CidrIp is not valid."),
    InvalidPrefixListIdNotFound => (404, "InvalidPrefixListId.NotFound", "The specified prefix list was not found."),
    InvalidPortRangeListIdNotFound => (400, "InvalidPortRangeListId.NotFound", "The specified port range list was not found."),
    InvalidPolicyMalformed => (400, "InvalidPolicy.Malformed", "The specified parameter \"Policy\" is not valid."),
    InvalidPriorityMalformed => (400, "InvalidPriority.Malformed", "The specified parameter \"Priority\" is not valid."),
    InvalidNicTypeValueNotSupported => (400, "InvalidNicType.ValueNotSupported", "The specified NicType does not exist."),
    InvalidSecurityGroupDiscriptionMalformed => (400, "InvalidSecurityGroupDiscription.Malformed", "The specified security group rule description is not valid."),
    MissingSourceGroupOrCidr => (400, "MissingParameter", "The input parameter \"SourceGroupId\" or \"SourceCidrIp\" cannot be both blank."),
    // Egress's counterpart of the row above (its tables name only the ingress wording).
    MissingDestGroupOrCidr => (400, "MissingParameter", "The input parameter \"DestGroupId\" or \"DestCidrIp\" cannot be both blank."),
    InvalidParamPermissions => (400, "InvalidParam.Permissions", "The specified parameter Permissions cannot coexist with other parameters."),
    InvalidParamDuplicatePermissions => (400, "InvalidParam.DuplicatePermissions", "There are duplicate permissions in the specified parameter Permissions."),
    InvalidParamSecurityGroupRuleIdRepeated => (400, "InvalidParam.SecurityGroupRuleIdRepeated", "The specified parameter SecurityGroupRuleId is repeated."),
    InvalidParamterConflict => (400, "InvalidParamter.Conflict", "The specified SecurityGroupId should be different from the SourceGroupId."),
    InvalidSourceGroupIdNotFound => (404, "InvalidSourceGroupId.NotFound", "The SourceGroupId provided does not exist in our records."),
    InvalidDestGroupIdNotFound => (404, "InvalidDestGroupId.NotFound", "The DestGroupId provided does not exist in our records."),
    InvalidSourceGroupIdMismatch => (400, "InvalidSourceGroupId.Mismatch", "Specified security group and source group are not in the same VPC."),
    InvalidDestGroupIdMismatch => (400, "InvalidDestGroupId.Mismatch", "Specified security group and destination group are not in the same VPC."),
    AuthorizationLimitExceed => (403, "AuthorizationLimitExceed", "The maximum number of authorization rules in the security group is exceeded."),
    InvalidGroupAuthItemNotFound => (403, "InvalidGroupAuthItem.NotFound", "Specified group authorized item does not exist in our records."),
    InvalidSecurityGroupRuleIdNotFound => (404, "InvalidSecurityGroupRuleId.NotFound", "The specified SecurityGroupRuleId is not exists."),
    InvalidGroupParameterOperationDenied => (400, "InvalidGroupParameter.OperationDenied", "The attributes Policy, SourceGroupId, DestGroupId of enterprise level security groups are not allowed to be set or modified."),
    InstanceSecurityGroupLimitExceeded => (400, "InstanceSecurityGroupLimitExceeded", "Exceeding the allowed amount of security groups that an instance can be in."),
    SecurityGroupInstanceLimitExceeded => (403, "SecurityGroupInstanceLimitExceeded", "The maximum number of instances in a security group is exceeded."),
    InvalidInstanceIdAlreadyExists => (403, "InvalidInstanceId.AlreadyExists", "The specified instance already exists in the specified security group."),
    InvalidSecurityGroupIdVpcMismatch => (400, "InvalidSecurityGroupId.VPCMismatch", "The specified security group and virtual switch are not in the same VPC."),
    InvalidInstanceIdMismatch => (400, "InvalidInstanceId.Mismatch", "Specified instance and security group are not in the same VPC."),
    InstanceLastSecurityGroup => (403, "InstanceLastSecurityGroup", "The specified security group is the last security group for the instance."),
    InstanceNotInSecurityGroup => (403, "InstanceNotInSecurityGroup", "The instance not in the group."),
    InstanceLockedForSecurityReasons => (403, "InstanceLockedForSecurity", "The specified operation is denied as your instance is locked for security reasons."),
}

/// The most of a request an error message repeats (a parameter name, a string to sign), in
/// bytes.
pub const MAX_ECHO_BYTES: usize = 4096;

/// An ECS error as it goes on the wire: a registered code and the message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// For Throttling codes: when to try again, in milliseconds, sent as the
    /// `x-acs-retry-after` header (the SDKs wait that long, then retry).
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code) -> Self {
        ApiError { code, message: code.message().to_string(), retry_after_ms: None }
    }

    /// `code` (a Throttling code) with the time to wait before retrying, in milliseconds.
    pub fn throttled(code: Code, retry_after_ms: u64) -> Self {
        ApiError { retry_after_ms: Some(retry_after_ms.max(1)), ..ApiError::new(code) }
    }

    /// A code whose message template names something (a parameter, a string to sign). What
    /// is echoed is cut at [`MAX_ECHO_BYTES`], so a huge request cannot make a huger answer.
    pub fn with(code: Code, name: &str) -> Self {
        let echoed = if name.len() <= MAX_ECHO_BYTES {
            std::borrow::Cow::Borrowed(name)
        } else {
            let mut cut = MAX_ECHO_BYTES;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            std::borrow::Cow::Owned(format!("{}…({} more bytes)", &name[..cut], name.len() - cut))
        };
        ApiError { code, message: code.message().replacen("{}", &echoed, 1), retry_after_ms: None }
    }

    pub fn missing(name: &str) -> Self {
        Self::with(Code::MissingParameter, name)
    }

    pub fn invalid(name: &str) -> Self {
        Self::with(Code::InvalidParameter, name)
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

impl From<Code> for ApiError {
    fn from(code: Code) -> Self {
        ApiError::new(code)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code.as_str(), self.status(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_disk_table_is_registered_exactly() {
        // Every row of ResetDisk.txt's error table, as (status, code, message).
        let rows: &[(u16, &str, &str)] = &[
            (
                400,
                "DiskCategory.OperationNotSupported",
                "The operation is not supported to the specified disk due to its disk category",
            ),
            (400, "InvalidRegionId.MalFormed", "The specified RegionId is not valid"),
            (400, "DryRunOperation", "Request validation has been passed with DryRun flag set."),
            (403, "IncorrectDiskStatus", "The current disk status does not support this operation."),
            (403, "IncorrectInstanceStatus", "The current status of the resource does not support this operation."),
            (403, "InstanceLockedForSecurity", "The instance is locked due to security."),
            (403, "InvalidParameter.Mismatch", "The specified snapshot is not created from the specified disk."),
            (
                403,
                "InvalidSnapshot.TooOld",
                "The snapshotId is created before 2013-07-15, it cannot be restored since the first time the disk detached.",
            ),
            (
                403,
                "InstanceExpiredOrInArrears",
                "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode).",
            ),
            (403, "OperationDenied", "The specified snapshot dees not support ResetDisk."),
            (403, "InvalidSnapshotId.NotReady", "The specified snapshot has not completed yet."),
            (403, "InvalidAccountStatus.NotEnoughBalance", "Your account does not have enough balance."),
            (403, "InvalidAccountStatus.SnapshotServiceUnavailable", "Snapshot service has not been opened yet."),
            (403, "Operation.Conflict", "The operation may conflicts with others."),
            (403, "UserNotInTheWhiteList", "The user is not in disk white list."),
            (403, "InvalidParameter.KMSKeyId.CMKNotEnabled", "The CMK needs to be enabled."),
            (403, "InvalidParameter.KMSKeyId.KMSUnauthorized", "ECS service have no right to access your KMS."),
            (404, "InvalidParameter.KMSKeyId.NotFound", "The specified KMSKeyId does not exist."),
            (404, "InvalidDiskId.NotFound", "The specified disk does not exist."),
            (404, "Disk.NotFound", "The specified disk does not exist."),
            (404, "InvalidSnapshotId.NotFound", "The specified SnapshotId does not exist."),
            (404, "InvalidInstanceId.NotFound", "The specified InstanceId does not exist."),
            (500, "InternalError", "The request processing has failed due to some unknown error."),
            (
                500,
                "InternalError",
                "The request processing has failed due to some unknown error, exception or failure.",
            ),
        ];
        for (status, code, message) in rows {
            assert!(
                Code::ALL.iter().any(|c| c.status() == *status && c.as_str() == *code && c.message() == *message),
                "missing {status} {code} {message}"
            );
        }
    }

    #[test]
    fn templates_fill_the_name() {
        assert_eq!(
            ApiError::missing("DiskId").message,
            "The input parameter \"DiskId\" that is mandatory for processing this request is not supplied."
        );
    }

    #[test]
    fn registry_never_shrinks() {
        // Raise this number when adding codes; lowering it means a client-visible code vanished.
        assert!(Code::ALL.len() >= 150, "{}", Code::ALL.len());
    }
}
