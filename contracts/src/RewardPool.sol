// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @notice What the pool needs to know about the institutions (implemented by SwarmRegistry).
interface IInstitutionRegistry {
    function isInstitution(address account) external view returns (bool);
    function institutionCount() external view returns (uint256);
}

/// @title Reward pool with quorum-attested Merkle allocations
/// @notice Holds one ERC-20 reward pool for one valuation epoch.
///  1. Anyone funds the pool (`fund`, balance-delta accounting, so fee-on-transfer tokens are
///     credited what actually arrived).
///  2. Registered institutions attest an allocation: the Merkle root over `(account, amount)`
///     leaves, the allocation total, and the IPFS CID of the full allocation table. Each
///     institution attests once and cannot change its attestation. An allocation becomes payable
///     when `quorum` institutions attested the same (root, total, CID) and the pool holds the total.
///  3. Institutions and individuals claim their amount with a Merkle proof, once per account,
///     until the claim deadline. Anyone may submit a claim; the tokens always go to the leaf's account.
///  4. After the claim deadline (or, when no allocation became payable, after the attestation
///     deadline) anyone may return what is left to the treasury fixed at deployment.
/// There is no owner and no other way to move the pool's tokens.
/// @dev Leaves are OpenZeppelin StandardMerkleTree leaves:
/// `keccak256(bytes.concat(keccak256(abi.encode(account, amount))))`.
contract RewardPool is ReentrancyGuard {
    using SafeERC20 for IERC20;

    error ZeroAddress();
    error InvalidQuorum(uint256 quorum, uint256 institutions);
    error InvalidWindow();
    error NotInstitution(address account);
    error AlreadyAttested(address institution);
    error EmptyAllocation();
    error AllocationExceedsPool(uint256 total, uint256 balance);
    error AttestationClosed();
    error AlreadyFinalized();
    error NotFinalized();
    error ClaimWindowClosed();
    error AlreadyClaimed(address account);
    error InvalidProof(address account, uint256 amount);
    error ClaimExceedsAllocation(uint256 claimedTotal, uint256 allocationTotal);
    error SweepTooEarly(uint256 notBefore);
    error NothingToSweep();

    event Funded(address indexed from, uint256 amount);
    event Attested(
        address indexed institution, bytes32 indexed allocationId, bytes32 root, uint256 total, bytes cid, uint256 count
    );
    event AllocationFinalized(bytes32 indexed allocationId, bytes32 root, uint256 total, bytes cid, uint256 claimDeadline);
    event Claimed(address indexed account, uint256 amount);
    event Swept(address indexed treasury, uint256 amount);

    IERC20 public immutable token;
    IInstitutionRegistry public immutable registry;
    uint256 public immutable quorum;
    address public immutable treasury;
    uint256 public immutable claimWindow;
    uint256 public immutable attestationDeadline;

    uint256 public funded;
    bool public finalized;
    bytes32 public merkleRoot;
    uint256 public allocationTotal;
    bytes public allocationCid;
    uint256 public claimDeadline;
    uint256 public claimedTotal;

    mapping(bytes32 allocationId => uint256 count) public attestations;
    mapping(address institution => bytes32 allocationId) public attestationOf;
    mapping(address account => bool) public claimed;

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
        uint256 n = registry_.institutionCount();
        if (quorum_ == 0 || quorum_ > n) revert InvalidQuorum(quorum_, n);
        if (attestationWindow_ == 0 || claimWindow_ == 0) revert InvalidWindow();
        token = token_;
        registry = registry_;
        quorum = quorum_;
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
    function allocationId(bytes32 root, uint256 total, bytes calldata cid) public pure returns (bytes32) {
        return keccak256(abi.encode(root, total, keccak256(cid)));
    }

    /// @notice Attest an allocation (registered institutions only, once each).
    function attest(bytes32 root, uint256 total, bytes calldata cid) external nonReentrant {
        if (!registry.isInstitution(msg.sender)) revert NotInstitution(msg.sender);
        if (finalized) revert AlreadyFinalized();
        if (block.timestamp >= attestationDeadline) revert AttestationClosed();
        if (attestationOf[msg.sender] != bytes32(0)) revert AlreadyAttested(msg.sender);
        if (root == bytes32(0) || cid.length == 0) revert EmptyAllocation();
        uint256 balance = token.balanceOf(address(this));
        if (total > balance) revert AllocationExceedsPool(total, balance);

        bytes32 id = allocationId(root, total, cid);
        attestationOf[msg.sender] = id;
        uint256 count = ++attestations[id];
        emit Attested(msg.sender, id, root, total, cid, count);

        if (count >= quorum) {
            finalized = true;
            merkleRoot = root;
            allocationTotal = total;
            allocationCid = cid;
            claimDeadline = block.timestamp + claimWindow;
            emit AllocationFinalized(id, root, total, cid, claimDeadline);
        }
    }

    /// @notice Pay `amount` to `account` if `(account, amount)` is a leaf of the payable allocation.
    function claim(address account, uint256 amount, bytes32[] calldata proof) external nonReentrant {
        if (!finalized) revert NotFinalized();
        if (block.timestamp >= claimDeadline) revert ClaimWindowClosed();
        if (claimed[account]) revert AlreadyClaimed(account);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, amount))));
        if (!MerkleProof.verifyCalldata(proof, merkleRoot, leaf)) revert InvalidProof(account, amount);
        // Effects before the interaction (checks-effects-interactions).
        claimed[account] = true;
        uint256 newTotal = claimedTotal + amount;
        // A tree whose leaves add up to more than the attested total cannot pay out more than it.
        if (newTotal > allocationTotal) revert ClaimExceedsAllocation(newTotal, allocationTotal);
        claimedTotal = newTotal;
        emit Claimed(account, amount);
        token.safeTransfer(account, amount);
    }

    /// @notice Earliest time at which `sweep` may return the remaining tokens to the treasury.
    function sweepNotBefore() public view returns (uint256) {
        return finalized ? claimDeadline : attestationDeadline;
    }

    /// @notice Return everything left (unclaimed amounts and the unallocated remainder) to the treasury.
    function sweep() external nonReentrant {
        uint256 notBefore = sweepNotBefore();
        if (block.timestamp < notBefore) revert SweepTooEarly(notBefore);
        uint256 amount = token.balanceOf(address(this));
        if (amount == 0) revert NothingToSweep();
        emit Swept(treasury, amount);
        token.safeTransfer(treasury, amount);
    }
}
