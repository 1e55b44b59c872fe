// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {BitMaps} from "@openzeppelin/contracts/utils/structs/BitMaps.sol";

/// @notice What the pool needs to know about the institutions and the training (SwarmRegistry).
interface IInstitutionRegistry {
    function registrationClosed() external view returns (bool);
    function institutionCount() external view returns (uint256);
    function institutionAt(uint256 index) external view returns (address);
    function trainingDigest() external view returns (bytes32);
}

/// @title Reward pool with majority-attested Merkle allocations
/// @notice Holds one ERC-20 reward pool for one valuation epoch.
///  0. At deployment the pool copies the registry's institution set, which must already be closed
///     (no institution can be added after money arrives), and requires a quorum that is a strict
///     majority of that set.
///  1. Anyone funds the pool (`fund`, balance-delta accounting, so fee-on-transfer tokens are
///     credited what actually arrived) until an allocation is final or the attestation deadline.
///  2. Institutions of the set attest an allocation: the Merkle root over `(index, account, amount)`
///     leaves, the allocation total, the IPFS CID of the allocation document, and the registry's
///     training digest (best round, its model CIDs, the feature CIDs). Attesting is possible only
///     once training has stopped and the features are final, and only for the digest the registry
///     holds. Each institution attests once and cannot change its attestation. An allocation
///     becomes payable when `quorum` institutions attested the same one and the pool holds its total.
///  3. Each leaf is claimed once (a bitmap keyed by the leaf index, as Uniswap's merkle-distributor),
///     with a Merkle proof, until the claim deadline. Anyone may submit a claim; the tokens always
///     go to the leaf's account.
///  4. After the claim deadline (or, when no allocation became payable, after the attestation
///     deadline) anyone may return what is left to the treasury fixed at deployment; the treasury
///     itself may have it sent to another address (`sweepTo`), so a token that blocks the treasury
///     cannot lock the funds for good.
/// There is no owner and no other way to move the pool's tokens.
/// @dev Leaves are OpenZeppelin StandardMerkleTree leaves of `[uint256, address, uint256]`:
/// `keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))))`.
contract RewardPool is ReentrancyGuard {
    using SafeERC20 for IERC20;
    using BitMaps for BitMaps.BitMap;

    /// @notice Longest accepted attestation or claim window (one year): a longer one is a mistake.
    uint256 public constant MAX_WINDOW = 365 days;

    error ZeroAddress();
    error RegistrationOpen();
    error InvalidQuorum(uint256 quorum, uint256 institutions);
    error InvalidWindow(uint256 window);
    error NotInstitution(address account);
    error NotTreasury(address account);
    error AlreadyAttested(address institution);
    error EmptyAllocation();
    error TrainingMismatch(bytes32 attested, bytes32 recorded);
    error AllocationExceedsPool(uint256 total, uint256 balance);
    error AttestationClosed();
    error AlreadyFinalized();
    error NotFinalized();
    error ClaimWindowClosed();
    error AlreadyClaimed(uint256 index);
    error InvalidProof(uint256 index, address account, uint256 amount);
    error ClaimExceedsAllocation(uint256 claimedTotal, uint256 allocationTotal);
    error SweepTooEarly(uint256 notBefore);
    error NothingToSweep();

    event Funded(address indexed from, uint256 amount);
    event Attested(
        address indexed institution, bytes32 indexed allocationId, bytes32 root, uint256 total, bytes cid, uint256 count
    );
    event AllocationFinalized(
        bytes32 indexed allocationId, bytes32 root, uint256 total, bytes cid, bytes32 training, uint256 claimDeadline
    );
    event Claimed(uint256 indexed index, address indexed account, uint256 amount);
    event Swept(address indexed to, uint256 amount);

    IERC20 public immutable token;
    IInstitutionRegistry public immutable registry;
    uint256 public immutable quorum;
    uint256 public immutable institutionCount;
    address public immutable treasury;
    uint256 public immutable claimWindow;
    uint256 public immutable attestationDeadline;

    /// @notice The institution set copied from the registry at deployment.
    mapping(address account => bool) public isInstitution;

    uint256 public funded;
    bool public finalized;
    bytes32 public merkleRoot;
    uint256 public allocationTotal;
    bytes public allocationCid;
    bytes32 public attestedTraining;
    uint256 public claimDeadline;
    uint256 public claimedTotal;
    uint256 public sweptTotal;

    mapping(bytes32 allocationId => uint256 count) public attestations;
    mapping(address institution => bytes32 allocationId) public attestationOf;
    BitMaps.BitMap private _claimed;

    constructor(
        IERC20 token_,
        IInstitutionRegistry registry_,
        uint256 quorum_,
        address treasury_,
        uint256 attestationWindow_,
        uint256 claimWindow_
    ) {
        if (address(token_) == address(0) || address(registry_) == address(0) || treasury_ == address(0)) {
            revert ZeroAddress();
        }
        if (!registry_.registrationClosed()) revert RegistrationOpen();
        uint256 n = registry_.institutionCount();
        if (quorum_ * 2 <= n || quorum_ > n) revert InvalidQuorum(quorum_, n);
        if (attestationWindow_ == 0 || attestationWindow_ > MAX_WINDOW) revert InvalidWindow(attestationWindow_);
        if (claimWindow_ == 0 || claimWindow_ > MAX_WINDOW) revert InvalidWindow(claimWindow_);
        for (uint256 i = 0; i < n; ++i) {
            isInstitution[registry_.institutionAt(i)] = true;
        }
        token = token_;
        registry = registry_;
        quorum = quorum_;
        institutionCount = n;
        treasury = treasury_;
        claimWindow = claimWindow_;
        attestationDeadline = block.timestamp + attestationWindow_;
    }

    /// @notice Move `amount` tokens from the caller (after `approve`) into the pool.
    function fund(uint256 amount) external nonReentrant {
        if (finalized) revert AlreadyFinalized();
        if (block.timestamp >= attestationDeadline) revert AttestationClosed();
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        funded += received;
        emit Funded(msg.sender, received);
    }

    /// @notice Identifier of an allocation: what institutions attest and what the quorum counts.
    function allocationId(bytes32 root, uint256 total, bytes calldata cid, bytes32 training)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(root, total, keccak256(cid), training));
    }

    /// @notice Attest an allocation (institutions of the set only, once each, after training).
    /// @param training The registry's `trainingDigest()` that the allocation was computed from.
    function attest(bytes32 root, uint256 total, bytes calldata cid, bytes32 training) external nonReentrant {
        if (!isInstitution[msg.sender]) revert NotInstitution(msg.sender);
        if (finalized) revert AlreadyFinalized();
        if (block.timestamp >= attestationDeadline) revert AttestationClosed();
        if (attestationOf[msg.sender] != bytes32(0)) revert AlreadyAttested(msg.sender);
        if (root == bytes32(0) || cid.length == 0) revert EmptyAllocation();
        bytes32 recorded = registry.trainingDigest(); // reverts until the training record is final
        if (training != recorded) revert TrainingMismatch(training, recorded);
        uint256 balance = token.balanceOf(address(this));
        if (total > balance) revert AllocationExceedsPool(total, balance);

        bytes32 id = allocationId(root, total, cid, training);
        attestationOf[msg.sender] = id;
        uint256 count = ++attestations[id];
        emit Attested(msg.sender, id, root, total, cid, count);

        if (count >= quorum) {
            finalized = true;
            merkleRoot = root;
            allocationTotal = total;
            allocationCid = cid;
            attestedTraining = training;
            claimDeadline = block.timestamp + claimWindow;
            emit AllocationFinalized(id, root, total, cid, training, claimDeadline);
        }
    }

    /// @notice Whether leaf `index` of the payable allocation has been claimed.
    function isClaimed(uint256 index) external view returns (bool) {
        return _claimed.get(index);
    }

    /// @notice Pay leaf `index`, `(index, account, amount)`, of the payable allocation to `account`.
    function claim(uint256 index, address account, uint256 amount, bytes32[] calldata proof) external nonReentrant {
        if (!finalized) revert NotFinalized();
        if (block.timestamp >= claimDeadline) revert ClaimWindowClosed();
        if (_claimed.get(index)) revert AlreadyClaimed(index);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))));
        if (!MerkleProof.verifyCalldata(proof, merkleRoot, leaf)) revert InvalidProof(index, account, amount);
        // Effects before the interaction (checks-effects-interactions).
        _claimed.set(index);
        uint256 newTotal = claimedTotal + amount;
        // A tree whose leaves add up to more than the attested total cannot pay out more than it.
        if (newTotal > allocationTotal) revert ClaimExceedsAllocation(newTotal, allocationTotal);
        claimedTotal = newTotal;
        emit Claimed(index, account, amount);
        token.safeTransfer(account, amount);
    }

    /// @notice Earliest time at which what is left may be returned to the treasury.
    function sweepNotBefore() public view returns (uint256) {
        return finalized ? claimDeadline : attestationDeadline;
    }

    /// @notice Return everything left (unclaimed amounts, the unallocated remainder, donations) to
    /// the treasury (anyone may call).
    function sweep() external nonReentrant {
        _sweep(treasury);
    }

    /// @notice The treasury's own sweep, to an address of its choice (e.g. when the token blocks it).
    function sweepTo(address to) external nonReentrant {
        if (msg.sender != treasury) revert NotTreasury(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        _sweep(to);
    }

    function _sweep(address to) private {
        uint256 notBefore = sweepNotBefore();
        if (block.timestamp < notBefore) revert SweepTooEarly(notBefore);
        uint256 amount = token.balanceOf(address(this));
        if (amount == 0) revert NothingToSweep();
        sweptTotal += amount;
        emit Swept(to, amount);
        token.safeTransfer(to, amount);
    }
}
